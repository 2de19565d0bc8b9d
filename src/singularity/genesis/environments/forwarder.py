"""Inside a setup step's sandbox: relays 127.0.0.1:PORT to the registry proxy's socket, then runs
the step with the proxy variables set, and exits as the step did.

Run by `/usr/bin/python3 -I -S -c` (standard library only, like the sandbox's reaper). The
sandbox has its own network namespace with nothing but loopback, so pip and npm, told that their
proxy is http://127.0.0.1:PORT, reach only this relay, and through it only the proxy outside,
which decides what they may reach. The relay understands nothing of HTTP: it copies bytes.

Arguments: PORT SOCKET -- COMMAND...
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading

_CHUNK = 64 * 1024


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until its end, then pass the end on."""
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def serve(client: socket.socket, path: str) -> None:
    """Relay one connection to the proxy's socket."""
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def accept(listener: socket.socket, path: str) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            continue
        threading.Thread(target=serve, args=(client, path), daemon=True).start()


def proxy_env(port: int) -> dict[str, str]:
    """The variables pip, npm and most HTTP clients read for their proxy."""
    url = f"http://127.0.0.1:{port}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    found = {name: url for name in names}
    found.update(npm_config_proxy=url, npm_config_https_proxy=url, NO_PROXY="", no_proxy="")
    return found


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        print("usage: forwarder PORT SOCKET -- COMMAND...", file=sys.stderr)
        return 2
    port, path, command = int(args[0]), args[1], args[3:]
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    threading.Thread(target=accept, args=(listener, path), daemon=True).start()
    try:
        child = subprocess.Popen(command, env={**os.environ, **proxy_env(port)})
    except OSError as exc:
        print(f"{command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    code = child.wait()
    if code < 0:  # end as the step ended: by the same signal
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))  # daemon threads may still be relaying: do not wait for them
