"""The ``skypacs`` command: run the archive, one service, or maintenance tasks.

``skypacs serve`` runs STOW-RS, QIDO-RS and WADO in one process on embedded
defaults (Postgres and blobs under the data dir); ``skypacs stow|qido|wado``
runs one service; ``skypacs migrate`` brings the index schema up to date.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skypacs import __version__
from skypacs.config import MAX_WORKERS, ConfigError, Settings, load_settings
from skypacs.errors import SkypacsError
from skypacs.malloc_tuning import tune_malloc
from skypacs.observability import configure_logging

from .apps import APPS
from .http_server import EXIT_FAILURE, EXIT_OK, run_single, say

EXIT_CONFIG = 2


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"data_dir": args.data_dir} if args.data_dir is not None else {}
    settings = load_settings(**overrides)
    configure_logging(settings.log)
    return settings


def _cmd_app(args: argparse.Namespace) -> int:
    from skypacs.security import listen_refusal

    settings = _settings(args)
    refusal = listen_refusal(settings, args.host)
    if refusal is not None:
        say(f"skypacs {args.command}: {refusal}", err=True)
        return EXIT_CONFIG
    if args.workers is not None:
        http = settings.http.model_copy(update={"workers": args.workers})
        settings = settings.model_copy(update={"http": http})
    http = settings.http
    tune_malloc(http.malloc_trim_threshold_bytes, http.malloc_mmap_threshold_bytes)
    if settings.http.workers > 1:
        if not sys.platform.startswith("linux"):
            say(f"skypacs {args.command}: several workers need Linux; use 1 here", err=True)
            return EXIT_CONFIG
        from .supervisor import run_workers

        return run_workers(args.command, args.host, args.port, settings)
    create_app = APPS[args.command].factory()
    return run_single(create_app(settings), args.host, args.port, settings)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from skypacs.index import run_migrations

    settings = _settings(args)
    applied = asyncio.run(run_migrations(settings))
    for name in applied:
        say(f"applied {name}")
    if not applied:
        say("index schema is current")
    return EXIT_OK


async def _sweep(settings: Settings, stale_after_s: float, orphan_grace_s: float) -> str:
    from skypacs.ingest.sweeper import sweep
    from skypacs.runtime import open_runtime

    async with open_runtime(settings, migrate=False, relay=False) as runtime:
        report = await sweep(
            runtime.index,
            runtime.blobs,
            stale_after_s=stale_after_s,
            orphan_grace_s=orphan_grace_s,
        )
    return (
        f"removed {report.stale_claims} unfinished upload(s), {report.purged_rows} deleted or "
        f"replaced version(s), {report.orphan_blobs} orphan blob(s), "
        f"{report.empty_containers} empty series/study row(s)"
    )


def _cmd_sweep(args: argparse.Namespace) -> int:
    settings = _settings(args)
    stale = (
        args.stale_after if args.stale_after is not None else settings.stow.stale_creating_after_s
    )
    say(asyncio.run(_sweep(settings, stale, args.orphan_grace)))
    return EXIT_OK


async def _reindex(settings: Settings) -> str:
    from skypacs.index import open_index
    from skypacs.index.search_extra import reindex

    async with open_index(settings, migrate=False) as index:
        report = await reindex(index.pool, settings.qido.extra_query_tags)
    tags = ", ".join(report.tags) or "none"
    return (
        f"extra query attributes: {tags}; {report.values} value(s) indexed from "
        f"{report.instances} stored instance(s)"
    )


def _cmd_reindex(args: argparse.Namespace) -> int:
    say(asyncio.run(_reindex(_settings(args))))
    return EXIT_OK


def _cmd_apikey(args: argparse.Namespace) -> int:
    from skypacs.security import admin

    settings = _settings(args)
    if args.action == "create":
        key, row = asyncio.run(admin.create_key(settings, name=args.name, role=args.role))
        say(key)
        note = f"API key {row.name!r} ({row.role}, id {row.key_id}) created; it is shown once"
        say(note + ": send it as Authorization: Bearer <key>", err=True)
        return EXIT_OK
    if args.action == "list":
        for line in asyncio.run(admin.key_table(settings, include_revoked=args.all)):
            say(line)
        return EXIT_OK
    revoked = asyncio.run(admin.revoke_key(settings, args.key))
    if not revoked:
        say(f"skypacs apikey revoke: no active key named or with id {args.key!r}", err=True)
        return EXIT_FAILURE
    for row in revoked:
        say(f"revoked API key {row.name!r} (id {row.key_id})")
    return EXIT_OK


def _cmd_audit(args: argparse.Namespace) -> int:
    from skypacs.index.audit_log import AuditFilter
    from skypacs.security import admin

    flt = AuditFilter(
        subject=args.subject,
        study_uid=args.study,
        action=args.action,
        since=args.since,
        until=args.until,
        limit=args.limit,
    )
    for line in asyncio.run(admin.audit_lines(_settings(args), flt, as_json=args.json)):
        say(line)
    return EXIT_OK


def _timestamp(value: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _add_apikey_parser(commands: Any) -> None:
    apikey = commands.add_parser(
        "apikey",
        help="create, list and revoke API keys",
        description="API keys authenticate machines; send one as Authorization: Bearer <key>.",
    )
    actions = apikey.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--role", required=True, choices=("reader", "writer", "admin"))
    listing = actions.add_parser("list", help="list active keys (never the secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key", help="the key's name or id")
    for sub in (create, listing, revoke):
        _add_data_dir(sub)
    apikey.set_defaults(handler=_cmd_apikey)


def _add_audit_parser(commands: Any) -> None:
    audit = commands.add_parser(
        "audit",
        help="list audit records (who accessed which patient data)",
        description="Newest first; every filter is optional.",
    )
    _add_data_dir(audit)
    audit.add_argument("--subject", help="token subject, apikey:NAME or anonymous")
    audit.add_argument("--study", help="StudyInstanceUID")
    audit.add_argument("--action", choices=("search", "retrieve", "store", "delete"))
    audit.add_argument("--since", type=_timestamp, help="from this ISO 8601 time (inclusive)")
    audit.add_argument("--until", type=_timestamp, help="before this ISO 8601 time")
    audit.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(handler=_cmd_audit)


def _cmd_version(_args: argparse.Namespace) -> int:
    say(f"skypacs {__version__}")
    return EXIT_OK


def _worker_count(value: str) -> int:
    count = int(value) if value.isdigit() else 0
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"a number of processes from 1 to {MAX_WORKERS}")
    return count


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where embedded Postgres and blobs live (default ./var, or SKYPACS_DATA_DIR)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``skypacs`` argument parser."""
    parser = argparse.ArgumentParser(prog="skypacs", description="SkyPACS DICOM archive")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, app in APPS.items():
        sub = commands.add_parser(name, help=app.help, description=app.help)
        sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        sub.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
        sub.add_argument(
            "--workers",
            type=_worker_count,
            default=None,
            help="server processes sharing the port (default SKYPACS_HTTP__WORKERS, 1)",
        )
        _add_data_dir(sub)
        sub.set_defaults(handler=_cmd_app)
    migrate = commands.add_parser("migrate", help="apply pending index migrations")
    _add_data_dir(migrate)
    migrate.set_defaults(handler=_cmd_migrate)
    sweep = commands.add_parser(
        "sweep",
        help="remove unfinished uploads, orphan blobs and purged versions",
        description="Resolve what crashes and deletions leave behind; safe to run any time.",
    )
    _add_data_dir(sweep)
    sweep.add_argument(
        "--stale-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="age of an unfinished upload to remove (default SKYPACS_STOW__STALE_CREATING_AFTER_S)",
    )
    sweep.add_argument(
        "--orphan-grace",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="minimum age of a blob without index row before it is removed (default 300)",
    )
    sweep.set_defaults(handler=_cmd_sweep)
    reindex = commands.add_parser(
        "reindex",
        help="index the extra query attributes of stored instances",
        description="Apply the configured extra query attribute list and backfill its values.",
    )
    _add_data_dir(reindex)
    reindex.set_defaults(handler=_cmd_reindex)
    _add_apikey_parser(commands)
    _add_audit_parser(commands)
    version = commands.add_parser("version", help="print the SkyPACS version")
    version.set_defaults(handler=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skypacs`` command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        say(str(exc), err=True)
        return EXIT_CONFIG
    except SkypacsError as exc:
        say(f"skypacs {args.command}: {exc.detail}", err=True)
        return EXIT_FAILURE
