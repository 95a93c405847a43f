"""The one exception type users see: a one-line message, printed by the CLI without a traceback."""


class PipelineError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message names the file, line or key and what is wrong, e.g.
    ``runs/x.trec:12: score 'abc' is not a number``.

    Example:
        >>> raise PipelineError("runs/x.trec:3: expected 6 columns, found 4")
        Traceback (most recent call last):
        ...
        pipeline.errors.PipelineError: runs/x.trec:3: expected 6 columns, found 4
    """
