# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Reads from the local Docker Engine API over its unix socket (Python's standard library only).

``docker inspect``, ``docker ps`` and ``docker image inspect`` each start a CLI process that asks the engine's HTTP
API and prints its JSON. A release asks those questions many times (a health gate asks every fraction of a second),
and on a busy host each process costs tens of milliseconds. ``EngineAPI`` asks the same API directly, over one
kept-alive connection, and gets the same JSON. It only reads: every change still goes through the ``docker`` and
``docker compose`` CLIs.

``EngineAPI.local()`` returns None whenever the CLI might talk to another engine than the local socket (a
``DOCKER_HOST`` that is not ``unix://``, a ``DOCKER_CONTEXT``, a current context other than ``default`` in the CLI's
config) or the socket cannot be opened; callers then use the CLI, as they do when a request fails.
"""

from __future__ import annotations

import json
import os
import socket
from http.client import HTTPConnection, HTTPException
from urllib.parse import quote, urlencode

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT = 30


class EngineError(Exception):
    """The API could not be asked (socket, protocol or an unexpected answer): fall back to the CLI."""


class _UnixConnection(HTTPConnection):
    def __init__(self, path, timeout):
        HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except Exception:
            sock.close()
            raise
        self.sock = sock


def _current_context(environ):
    home = environ.get("HOME") or os.path.expanduser("~")
    config_dir = environ.get("DOCKER_CONFIG") or os.path.join(home, ".docker")
    try:
        with open(os.path.join(config_dir, "config.json")) as handle:
            return (json.load(handle) or {}).get("currentContext") or "default"
    except (OSError, ValueError, AttributeError):
        return "default"


def local_socket(environ=None):
    """The path of the local engine's socket the docker CLI would use, or None when it would use something else."""
    environ = os.environ if environ is None else environ
    if environ.get("DOCKER_CONTEXT") not in (None, "", "default"):
        return None
    host = environ.get("DOCKER_HOST")
    if host:
        return host[len("unix://"):] if host.startswith("unix://") and len(host) > len("unix://") else None
    if _current_context(environ) != "default":
        return None
    return DEFAULT_SOCKET


class EngineAPI(object):
    """GET requests to the engine's API, answered with parsed JSON."""

    def __init__(self, path, timeout=TIMEOUT):
        self.path = path
        self.timeout = timeout
        self.conn = None

    @classmethod
    def local(cls, environ=None):
        path = local_socket(environ)
        if not path or not os.access(path, os.R_OK | os.W_OK):
            return None
        return cls(path)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get(self, path, query=None):
        """The JSON body of ``GET path?query``, or None when the engine answers 404 (no such object)."""
        url = path + ("?" + urlencode(query) if query else "")
        for attempt in (1, 2):  # a kept-alive connection the engine closed meanwhile is opened again, once
            if self.conn is None:
                self.conn = _UnixConnection(self.path, self.timeout)
            try:
                self.conn.request("GET", url, headers={"Accept": "application/json"})
                response = self.conn.getresponse()
                body = response.read()
            except (OSError, HTTPException) as exc:
                self.close()
                if attempt == 2:
                    raise EngineError("Docker Engine API at %s: GET %s failed: %s" % (self.path, path, exc))
                continue
            if response.status == 404:
                return None
            if response.status != 200:
                raise EngineError("Docker Engine API at %s: GET %s answered %s: %s" % (
                    self.path, path, response.status, body[:300].decode("utf-8", "replace")))
            try:
                return json.loads(body.decode("utf-8"))
            except ValueError as exc:
                raise EngineError("Docker Engine API at %s: GET %s answered no JSON: %s" % (self.path, path, exc))
        raise EngineError("Docker Engine API at %s: GET %s failed" % (self.path, path))  # pragma: no cover

    # --- the questions the CLI wrappers ask ---------------------------------------------------------------------

    def container_ids(self, label):
        """Ids of every container (running or not) carrying the label ``key=value``: ``docker ps -aq --filter``."""
        body = self.get("/containers/json", {"all": "1", "filters": json.dumps({"label": [label]})})
        return [item["Id"] for item in body or []]

    def inspect_container(self, container_id):
        """``docker inspect --type container`` of one container, or None when there is no such container."""
        return self.get("/containers/%s/json" % quote(container_id, safe=""))

    def inspect_containers(self, ids):
        """``inspect_container`` of several, leaving out those that are gone (as ``docker inspect`` prints them)."""
        return [info for info in (self.inspect_container(cid) for cid in ids) if info is not None]

    def inspect_image(self, ref):
        """``docker image inspect`` of one reference (name, name:tag, name@digest or id), or None when absent."""
        return self.get("/images/%s/json" % quote(ref, safe=":@/"))
