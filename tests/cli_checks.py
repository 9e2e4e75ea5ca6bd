"""What every CLI test of issue 10 checks: the exit code, the first line of stderr, and
no traceback anywhere."""

from __future__ import annotations

from click.testing import CliRunner, Result

from agentlog.cli import main


def invoke(cli: CliRunner, *args: str, stdin: str | bytes | None = None) -> Result:
    """Run the real command (stdout and stderr kept apart)."""
    return cli.invoke(main, list(args), input=stdin)


def checked(result: Result, code: int, stderr_starts: str | None = None) -> Result:
    """The result, after checking its exit code, its first stderr line and no traceback.

    ``stderr_starts`` None means stderr must be empty.
    """
    assert "Traceback" not in result.output, result.output
    unexpected = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not unexpected, repr(result.exception)
    assert result.exit_code == code, result.output
    first = result.stderr.splitlines()[0] if result.stderr else None
    if stderr_starts is None:
        assert first is None, result.stderr
    else:
        assert first is not None, result.output
        assert first.startswith(stderr_starts), result.stderr
    return result


def ok(cli: CliRunner, *args: str, stdin: str | bytes | None = None) -> str:
    """Stdout of a command that must succeed quietly."""
    return checked(invoke(cli, *args, stdin=stdin), 0).stdout
