"""The ``syncer`` click group and what every command shares: its error handling, the
configuration and the clients."""

from __future__ import annotations

import logging
from typing import Any

import click

from syncer.config import Config, load_config
from syncer.errors import SyncerError
from syncer.sinks.secrets import REDACTOR

CONFIG_HELP = "Configuration file (default: $SYNCER_CONFIG, then ./syncer.toml)."


def load(config_path: str | None) -> Config:
    # A ConfigError goes up to _SyncerGroup, which redacts it like every other error.
    return load_config(config_path)


class _SyncerGroup(click.Group):
    """Turns any error of a command into one redacted ``Error:`` line instead of a traceback.

    The one handler for every command (subgroups included, as they run inside this ``invoke``):
    commands let a ``SyncerError`` go up rather than catching it, so no message skips redaction.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except SyncerError as error:
            raise click.ClickException(REDACTOR(str(error))) from None
        except Exception as error:
            logging.getLogger("syncer.cli").debug("command failed", exc_info=True)
            raise click.ClickException(
                REDACTOR(f"{type(error).__name__}: {error} (run with -v for details)")
            ) from None


@click.group(cls=_SyncerGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Text for a terminal, JSON lines for log collectors.",
)
def main(verbose: bool, log_format: str) -> None:
    """Keep OpenSearch and Redis in step with DynamoDB Streams."""
    from syncer.obs.logs import configure_logging

    configure_logging(
        json_lines=log_format == "json", level=logging.DEBUG if verbose else logging.INFO
    )


def command_sinks(config: Config) -> Any:
    """The command's clients, closed when the command ends."""
    from syncer.sinks.build import build_sinks

    sinks = build_sinks(config)
    click.get_current_context().call_on_close(sinks.close)
    return sinks
