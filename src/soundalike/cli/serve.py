"""``soundalike serve``: the web app and JSON API under waitress."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from soundalike.cli._common import library_option, main, say_index, settings_of


@main.command()
@library_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface, which needs a password or --public).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default 8000; 0 picks a free one).")
@click.option("--threads", type=click.IntRange(min=1), default=4, show_default=True, help="Request threads.")
@click.option("--idle-timeout", type=click.IntRange(min=1), default=30, show_default=True, help="Seconds a connection may send nothing before it is closed.")
@click.option("--request-timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds a request may take to arrive, plus 1 s per 500 bytes received (slow clients are answered 408).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File holding the password (or its hash from `python -m soundalike.web.auth`) every page and API call asks for; default $SOUNDALIKE_PASSWORD, else none.")
@click.option("--public", is_flag=True, help="Serve a non-loopback --host without a password (to everyone who reaches it).")
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    threads: int,
    idle_timeout: int,
    request_timeout: float,
    password_file: Path | None,
    public: bool,
) -> None:
    """Serve the web app and JSON API with waitress (a production WSGI server)."""
    from soundalike.errors import EmptyLibraryError
    from soundalike.library import Library
    from soundalike.threads import one_math_thread
    from soundalike.web import auth, create_app
    from soundalike.web.server import ServerLimits, create_server

    settings = settings_of(ctx, host=host, port=port)
    password = auth.load_password(password_file)
    auth.check_exposure(settings.host, password=password is not None, public=public)
    library = Library.open(settings)
    index: Any = None
    try:
        loaded = library.index(progress=say_index(False))
        index = loaded.index
        if loaded.rebuilt_because is not None:
            click.echo(f"index: rebuilt ({index.backend}, {index.count} tracks) because {loaded.rebuilt_because}", err=True)
    except EmptyLibraryError:
        click.echo("no tracks yet: run `soundalike ingest PATH`; the app picks up the index once it is built", err=True)
    one_math_thread()  # after the index is ready: each request is one thread, each on one BLAS thread
    app = create_app({"SOUNDALIKE_PASSWORD_HASH": password}, library=library, index=index)
    upload_limit = int(app.config["MAX_CONTENT_LENGTH"])
    limits = ServerLimits(idle_timeout=idle_timeout, request_timeout=request_timeout)
    try:
        # waitress with bounds on slow clients, body and header sizes (see soundalike.web.server)
        server: Any = create_server(
            app, host=settings.host, port=settings.port, threads=threads, max_body_bytes=upload_limit, limits=limits
        )
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc})") from exc
    listening = getattr(server, "effective_listen", None) or [(server.effective_host, server.effective_port)]
    urls = ", ".join(f"http://{f'[{h}]' if ':' in str(h) else h}:{p}/" for h, p in listening)
    what = f"{index.count} tracks, {index.backend} index" if index is not None else "empty library"
    click.echo(f"serving {settings.library} ({what}) at {urls}  (Ctrl+C stops)")
    sys.stdout.flush()

    def _stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # waitress's loop stops on it, as on Ctrl+C

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    click.echo("stopped")
