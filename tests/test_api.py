"""The public surface: every exported name resolves, and importing it stays light."""

import subprocess
import sys

import pipeline


def test_every_exported_name_resolves():
    missing = [name for name in pipeline.__all__ if getattr(pipeline, name, None) is None]
    assert missing == []


def test_import_and_help_do_not_load_torch_or_the_jvm():
    code = (
        "import sys, pipeline, pipeline.cli; pipeline.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'jnius', 'ranx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
