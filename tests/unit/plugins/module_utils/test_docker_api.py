"""module_utils/_docker_api: which engine the docker CLI would ask, and an API that cannot be reached.
(Its answers are compared with the CLI's against the sandbox's real engine in tests/sandbox/test_docker_cli.py.)"""

import json
import socket
import threading

import pytest

from ansible_collections.runbook.release.plugins.module_utils._docker_api import (
    DEFAULT_SOCKET, EngineAPI, EngineError, local_socket)


@pytest.mark.parametrize("environ, expected", [
    ({}, DEFAULT_SOCKET),
    ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "/run/user/1000/docker.sock"),
    ({"DOCKER_HOST": "tcp://10.0.0.5:2376"}, None),
    ({"DOCKER_HOST": "ssh://deploy@host"}, None),
    ({"DOCKER_HOST": "unix://"}, None),
    ({"DOCKER_CONTEXT": "remote"}, None),
    ({"DOCKER_CONTEXT": "default"}, DEFAULT_SOCKET),
])
def test_the_socket_is_the_one_the_cli_would_use(tmp_path, environ, expected):
    assert local_socket(dict(environ, HOME=str(tmp_path))) == expected


def test_a_current_context_in_the_cli_config_means_the_cli(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "prod"}))
    assert local_socket({"DOCKER_CONFIG": str(tmp_path)}) is None
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert local_socket({"DOCKER_CONFIG": str(tmp_path)}) == DEFAULT_SOCKET
    (tmp_path / "config.json").write_text("not json")
    assert local_socket({"DOCKER_CONFIG": str(tmp_path)}) == DEFAULT_SOCKET


def test_no_usable_socket_means_no_api(tmp_path):
    assert EngineAPI.local({"DOCKER_HOST": "unix://%s" % (tmp_path / "absent.sock")}) is None


def test_a_socket_nobody_answers_is_an_engine_error_naming_it(tmp_path):
    path = tmp_path / "dead.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the file is there, nobody listens
    with pytest.raises(EngineError, match="dead.sock: GET /containers/json failed"):
        EngineAPI(str(path)).container_ids("a=b")


def serve_once(path, answer):
    """A unix socket that answers one HTTP request with the given raw bytes (what a broken engine would send)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def run():
        conn, _addr = server.accept()
        conn.recv(65536)
        conn.sendall(answer)
        conn.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_error_status_or_a_body_that_is_not_json_is_an_engine_error(tmp_path):
    serve_once(tmp_path / "a.sock", b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom")
    with pytest.raises(EngineError, match="answered 500: boom"):
        EngineAPI(str(tmp_path / "a.sock")).inspect_container("abc")
    serve_once(tmp_path / "b.sock", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{no}")
    with pytest.raises(EngineError, match="answered no JSON"):
        EngineAPI(str(tmp_path / "b.sock")).inspect_container("abc")
    serve_once(tmp_path / "c.sock", b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    assert EngineAPI(str(tmp_path / "c.sock")).inspect_image("demo/api:v0") is None
