# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The probes of runbook.release.smoke_check: one sample of a check, of each type.

``Probes(module, ...).sample(check)`` returns one sample (see _smoke_judge): HTTP with urllib as
``ansible.module_utils.urls.Request.open`` sends it (``_open``: proxies from the environment, credentials from the
URL, a fresh cookie jar, gzip decoded, the ``follow_redirects`` policy and TLS context of ``urls``), TCP and DNS
with ``socket``, TLS with ``ssl`` and the DER reader of _smoke_tls, containers and logs with the docker CLI (argv
lists through ``module.run_command``, via _compose.Docker), PostgreSQL through _postgres, and scenarios as ordered
HTTP steps whose captured values feed later steps, with cleanup steps that always run. Probes are called from
several threads at once.

Start-up cost matters (a smoke check runs right after a rollout, and the module starts afresh each time): a TLS
context, one per certificate setting, is built on the first HTTPS connection only (it loads the CA store, tens of
ms), and ``ansible.module_utils.urls`` (which imports ``cryptography``), _smoke_tls, _compose and _postgres are
imported by the checks that need them, so 50 plain-http checks pay for none of them.

Secrets: values of secret headers (Authorization, Cookie, ...) and secret captures are added to the module's
``no_log_values`` the moment they are known, so Ansible masks them in everything the module returns; results
carry no request headers or bodies, and response snippets go through ``scrub_text``.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.request
from http.cookiejar import CookieJar
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse, urlunparse

from ansible_collections.runbook.release.plugins.module_utils import _smoke_spec as spec

USER_AGENT = "runbook.release-smoke_check/0.1.0"
MAX_BODY = 1024 * 1024
APPLICATION_NAME = "runbook-smoke_check"


def _ms(started):
    return round((time.monotonic() - started) * 1000.0, 2)


def sample_of(ok, latency_ms=None, reason=None, status=None, **details):
    return {"ok": bool(ok), "latency_ms": latency_ms, "reason": reason, "status": status,
            "five_xx": status is not None and 500 <= status <= 599, "details": details}


class Response:
    """What a probe keeps of an HTTP answer."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self._doc = None
        self._parsed = False
        self.json_error = None

    def header(self, name):
        return self.headers.get(name) if self.headers is not None else None

    def doc(self):
        if not self._parsed:
            self._parsed = True
            try:
                self._doc = json.loads(self.body.decode("utf-8"))
            except ValueError as exc:
                self.json_error = "the response is not JSON (%s)" % str(exc).split(":", maxsplit=1)[0]
        return self._doc

    def text(self):
        return self.body.decode("utf-8", "replace")


class _HTTPSHandler(urllib.request.HTTPSHandler):
    """HTTPS with the TLS context ``context_of()`` returns, asked for when an HTTPS connection is opened (a plain-http
    request never needs one, unless it is redirected to https)."""

    def __init__(self, context_of):
        # Not HTTPSHandler.__init__: from Python 3.12 it builds a default context (loads the CA store) when given none.
        urllib.request.AbstractHTTPHandler.__init__(self)  # pylint: disable=non-parent-init-called
        self._context_of = context_of

    def https_open(self, req):
        return self.do_open(http.client.HTTPSConnection, req, context=self._context_of())


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """The ``follow_redirects`` policy of ``ansible.module_utils.urls.HTTPRedirectHandler`` ("safe": GET and HEAD
    only; "none": the 3xx is the answer), imported when an answer is a redirect."""

    if not hasattr(urllib.request.HTTPRedirectHandler, "http_error_308"):  # Python < 3.11, as urls does
        http_error_308 = urllib.request.HTTPRedirectHandler.http_error_302

    def __init__(self, follow_redirects):
        super().__init__()
        self.follow_redirects = follow_redirects

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        from ansible.module_utils.urls import HTTPRedirectHandler
        return HTTPRedirectHandler(self.follow_redirects).redirect_request(req, fp, code, msg, headers, newurl)


class Probes:
    """Takes samples of checks. ``secrets`` are the module's ``secrets``; ``unique`` the run's ``${unique}``."""

    def __init__(self, module, secrets=None, unique=""):
        self.module = module
        self.context = {"unique": unique}
        self.context.update(("secrets.%s" % k, "" if v is None else str(v)) for k, v in (secrets or {}).items())
        self._lock = threading.Lock()
        self._docker = None
        self._contexts = {}
        # What urllib's ProxyHandler reads from the environment on every request; the environment does not change.
        self._proxies = urllib.request.getproxies()
        self.commands = []

    # --- plumbing ---------------------------------------------------------------------------------------------

    def mark_secret(self, value):
        """Mask ``value`` wherever it appears in what the module returns from now on."""
        if value is None or value == "":
            return
        with self._lock:
            self.module.no_log_values.add(str(value))

    def tls_context(self, validate_certs, ca_path):
        """The TLS context of a certificate setting, built once (it loads the CA store) by ``urls.make_context``."""
        key = (bool(validate_certs), ca_path)
        with self._lock:
            if key not in self._contexts:
                from ansible.module_utils.urls import make_context
                self._contexts[key] = make_context(cafile=ca_path, validate_certs=bool(validate_certs))
            return self._contexts[key]

    def ensure_docker(self):
        """The docker CLI wrapper, made now (a missing docker CLI fails the module from the calling thread)."""
        return self.docker

    @property
    def docker(self):
        with self._lock:
            if self._docker is None:
                from ansible_collections.runbook.release.plugins.module_utils._compose import Docker
                self._docker = Docker(self.module, None)
                self.commands = self._docker.commands
            return self._docker

    def sample(self, check):
        started = time.monotonic()
        try:
            return getattr(self, "_" + check["type"])(check)
        except Exception as exc:  # pylint: disable=broad-except
            # One broken probe must not take the others (or the verdict) down with it.
            return sample_of(False, _ms(started), "%s check raised %s: %s"
                             % (check["type"], type(exc).__name__, spec.scrub_text(str(exc), 200)))

    # --- http -------------------------------------------------------------------------------------------------

    def request(self, fields, context):
        """Send one HTTP request; (Response or None, latency_ms, transport error or None)."""
        url = str(spec.render(fields["url"], context))
        headers = {str(k): str(v) for k, v in spec.render(fields["headers"], context).items()}
        for value in spec.secret_header_values(headers):
            self.mark_secret(value)
        data = None
        if fields["json"] is not None:
            data = json.dumps(spec.render(fields["json"], context)).encode("utf-8")
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        elif fields["body"] is not None:
            data = str(spec.render(fields["body"], context)).encode("utf-8")
        started = time.monotonic()
        validate, ca_path = fields["validate_certs"] is not False, fields.get("ca_path")
        try:
            if ca_path:
                # A CA file that cannot be read fails the check even for a plain-http URL, as it always has.
                self.tls_context(validate, ca_path)
            answer = self._open(fields["method"], url, data, headers, fields["timeout_s"] or 10, validate, ca_path,
                                "safe" if fields.get("follow_redirects") is not False else "none")
            with answer:
                response = Response(answer.status, answer.headers, answer.read(MAX_BODY))
        except HTTPError as exc:
            try:
                body = exc.read(MAX_BODY) if exc.fp is not None else b""
            except (OSError, ValueError):
                body = b""
            response = Response(exc.code, exc.headers, body)
        except (URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            return None, _ms(started), "%s %s failed: %s" % (
                fields["method"], spec.scrub_url(url), spec.scrub_text(str(reason), 200))
        return response, _ms(started), None

    def _open(self, method, url, data, headers, timeout, validate_certs, ca_path, follow_redirects):
        """The request ``ansible.module_utils.urls.Request().open()`` sends with these options (``use_netrc=False``,
        no client certificate, the TLS context of ``tls_context()``), through an opener of its own.

        Request.open installs its opener process-wide and then opens with whichever opener is installed, so probes
        in other threads could send this request with their redirect policy or TLS context. Here each request has
        its own opener, as in Request.open: credentials in the URL answer basic and digest challenges, the proxies
        are the environment's, and a fresh cookie jar keeps cookies set along a redirect chain for that chain only.
        """
        handlers = []
        parsed = urlparse(url)
        if parsed.scheme != "ftp" and "@" in parsed.netloc:
            credentials, netloc = parsed.netloc.split("@", 1)
            username, _sep, password = credentials.partition(":")
            url = urlunparse(parsed._replace(netloc=netloc))
            if username:
                passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
                passwords.add_password(None, netloc, unquote(username), unquote(password))
                handlers.extend([urllib.request.HTTPBasicAuthHandler(passwords),
                                 urllib.request.HTTPDigestAuthHandler(passwords)])
        handlers.extend([urllib.request.ProxyHandler(self._proxies),
                         _HTTPSHandler(lambda: self.tls_context(validate_certs, ca_path)),
                         _RedirectHandler(follow_redirects), urllib.request.HTTPCookieProcessor(CookieJar())])
        request = urllib.request.Request(url, data=data, method=method.upper())
        request.add_header("User-agent", USER_AGENT)
        for name, value in headers.items():
            request.add_header(name, value)
        answer = urllib.request.build_opener(*handlers).open(request, None, timeout)
        if answer.headers.get("content-encoding", "").lower() == "gzip":
            from ansible.module_utils.urls import GzipDecodedReader
            answer.fp = GzipDecodedReader(answer.fp)
            answer.length = None
        return answer

    def judge(self, fields, response, latency_ms, context):
        """Reasons why an HTTP answer does not meet the expectations of ``fields``; empty when it does."""
        reasons = []
        if not spec.status_ok(response.status, fields["status_rules"]):
            reason = "status %s, expected %s" % (response.status, spec.describe_status_rules(fields["status_rules"]))
            if response.body:
                reason += " (body: %s)" % spec.scrub_text(response.text(), 160)
            return [reason]
        if fields.get("max_latency_ms") and latency_ms > fields["max_latency_ms"]:
            reasons.append("took %s ms, more than max_latency_ms %s" % (latency_ms, fields["max_latency_ms"]))
        for name, present, pattern in fields["header_rules"]:
            value = response.header(name)
            if not present and value is not None:
                reasons.append("header %s is present, expected it absent" % name)
            elif present and value is None:
                reasons.append("header %s is missing" % name)
            elif pattern is not None and not spec.render_pattern(pattern, context).search(value):
                shown = spec.MASK if spec.is_secret_header(name) else spec.scrub_text(value, 80)
                reasons.append("header %s is %r, does not match /%s/" % (name, shown, pattern.pattern))
        if fields["body_re"] is not None:
            body_re = spec.render_pattern(fields["body_re"], context)
            if not body_re.search(response.text()):
                reasons.append("body does not match /%s/ (body: %s)" % (body_re.pattern, spec.scrub_text(response.text(), 120)))
        if fields["json_rules"]:
            doc = response.doc()
            reasons.extend([response.json_error] if response.json_error else
                           spec.check_json(doc, fields["json_rules"], context))
        if fields["expect_version"] is not None:
            reasons.extend(self._version(fields, response, context))
        return reasons

    def _version(self, fields, response, context):
        want = str(spec.render(fields["expect_version"], context))
        if fields["version_header"]:
            got = response.header(fields["version_header"])
            where = "header %s" % fields["version_header"]
        else:
            doc = response.doc()
            if response.json_error:
                return ["cannot read the version: %s" % response.json_error]
            found, got = spec.resolve(doc, fields["version_tokens"])
            got = got if found else None
            where = "JSON field %s" % fields["version_field"]
        if got is None:
            return ["version: %s is missing, expected %s" % (where, want)]
        if str(got) != want:
            return ["version is %s, expected %s (from %s)" % (got, want, where)]
        return []

    def _http(self, check):
        response, latency, error = self.request(check, self.context)
        if error:
            return sample_of(False, latency, error)
        reasons = self.judge(check, response, latency, self.context)
        version = response.header(check["version_header"]) if check.get("version_header") else None
        if version is None and check.get("expect_version") is not None and not response.json_error:
            found, value = spec.resolve(response.doc(), check["version_tokens"])
            version = value if found else None
        return sample_of(not reasons, latency, "; ".join(reasons) or None, response.status,
                         **({"version": version} if version is not None else {}))

    # --- scenario ---------------------------------------------------------------------------------------------

    def _scenario(self, check):
        context = dict(self.context)
        steps, failure, total = [], None, 0.0
        for step in check["steps"]:
            if step["cleanup"]:
                continue
            if failure is not None:
                steps.append({"name": step["name"], "ok": None, "reason": "not run: an earlier step failed"})
                continue
            result = self._step(step, context)
            total += result.get("latency_ms") or 0
            steps.append(result)
            if not result["ok"]:
                failure = "step %s: %s" % (step["name"], result["reason"])
        for step in check["steps"]:
            if not step["cleanup"]:
                continue
            result = self._step(step, context)
            total += result.get("latency_ms") or 0
            steps.append(result)
            if result["ok"] is False and failure is None:
                failure = "cleanup step %s: %s" % (step["name"], result["reason"])
        status = next((s.get("status") for s in steps if s.get("ok") is False), None)
        five_xx = any(500 <= (s.get("status") or 0) <= 599 for s in steps)
        sample = sample_of(failure is None, round(total, 2), failure, status, steps=steps)
        sample["five_xx"] = five_xx
        return sample

    def _step(self, step, context):
        missing = sorted(n for n in spec.placeholders(spec._request_values(step)) if n not in context)
        if missing:
            # Only cleanup steps get here (validation refuses others): nothing was created for them to clean up.
            return {"name": step["name"], "method": step["method"], "ok": None,
                    "reason": "skipped: %s not captured (the step that captures it did not run or failed)"
                              % ", ".join("${%s}" % n for n in missing)}
        response, latency, error = self.request(step, context)
        out = {"name": step["name"], "method": step["method"], "url": spec.scrub_url(str(spec.render(step["url"], context))),
               "latency_ms": latency}
        if error:
            out.update(ok=False, status=None, reason=error)
            return out
        out["status"] = response.status
        reasons = self.judge(step, response, latency, context)
        captured = {}
        if not reasons:
            for name, capture in step["capture"].items():
                value, problem = self._capture(capture, response)
                if problem:
                    reasons.append("capture %s: %s" % (name, problem))
                    continue
                if capture["secret"]:
                    self.mark_secret(value)
                context[name] = value
                captured[name] = spec.MASK if capture["secret"] else value
        out.update(ok=not reasons, reason="; ".join(reasons) or None)
        if captured:
            out["captured"] = captured
        return out

    @staticmethod
    def _capture(capture, response):
        if capture["kind"] == "status":
            return response.status, None
        if capture["kind"] == "header":
            value = response.header(capture["arg"])
            return (value, None) if value is not None else (None, "header %s is missing" % capture["arg"])
        doc = response.doc()
        if response.json_error:
            return None, response.json_error
        found, value = spec.resolve(doc, capture["arg"])
        if not found or value is None:
            return None, "%s is not in the response" % capture["source"]
        if isinstance(value, (dict, list)):
            return None, "%s is a %s, not a single value" % (capture["source"], type(value).__name__)
        return value, None

    # --- tcp, dns, tls ----------------------------------------------------------------------------------------

    def _tcp(self, check):
        started = time.monotonic()
        try:
            with socket.create_connection((check["host"], int(check["port"])), timeout=check["timeout_s"]):
                latency = _ms(started)
        except OSError as exc:
            return sample_of(False, _ms(started), "cannot connect to %s:%s: %s" % (check["host"], check["port"],
                                                                                   exc.strerror or exc))
        if check.get("max_latency_ms") and latency > check["max_latency_ms"]:
            return sample_of(False, latency, "connecting took %s ms, more than max_latency_ms %s"
                             % (latency, check["max_latency_ms"]))
        return sample_of(True, latency)

    def _dns(self, check):
        family = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}[check["family"]]
        box = {}

        def lookup():
            try:
                box["answer"] = socket.getaddrinfo(check["host"], None, family, socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                box["error"] = exc

        started = time.monotonic()
        # getaddrinfo has no timeout of its own; the lookup thread may outlive the check, which does not wait.
        worker = threading.Thread(target=lookup, daemon=True)
        worker.start()
        worker.join(check["timeout_s"])
        latency = _ms(started)
        if worker.is_alive():
            return sample_of(False, latency, "%s did not resolve within %s s" % (check["host"], check["timeout_s"]))
        if "error" in box:
            return sample_of(False, latency, "%s does not resolve: %s" % (check["host"], box["error"]))
        addresses = sorted({info[4][0] for info in box["answer"]})
        missing = [a for a in check["expect_addresses"] if a not in addresses]
        if missing:
            return sample_of(False, latency, "%s resolves to %s, not to %s"
                             % (check["host"], ", ".join(addresses), ", ".join(missing)), addresses=addresses)
        return sample_of(True, latency, addresses=addresses)

    def _fetch_certificate(self, check, context):
        with socket.create_connection((check["host"], int(check["port"])), timeout=check["timeout_s"]) as raw:
            with context.wrap_socket(raw, server_hostname=check["server_name"]) as conn:
                return conn.getpeercert(binary_form=True), conn.version()

    def _tls(self, check):
        from ansible_collections.runbook.release.plugins.module_utils import _smoke_tls as tls
        started = time.monotonic()
        problems, protocol, der = [], None, None
        if check["validate_certs"]:
            context = ssl.create_default_context(cafile=check["ca_path"]) if check["ca_path"] else \
                ssl.create_default_context()
            try:
                der, protocol = self._fetch_certificate(check, context)
            except ssl.SSLCertVerificationError as exc:
                problems.append("certificate not trusted for %s: %s" % (check["server_name"],
                                                                        exc.verify_message or exc.reason))
            except (OSError, ssl.SSLError) as exc:
                return sample_of(False, _ms(started), "TLS handshake with %s:%s failed: %s"
                                 % (check["host"], check["port"], getattr(exc, "reason", None) or exc))
        if der is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            try:
                der, protocol = self._fetch_certificate(check, context)
            except (OSError, ssl.SSLError) as exc:
                return sample_of(False, _ms(started), "TLS handshake with %s:%s failed: %s"
                                 % (check["host"], check["port"], getattr(exc, "reason", None) or exc))
        latency = _ms(started)
        try:
            cert = tls.parse_certificate(der)
        except tls.CertificateError as exc:
            return sample_of(False, latency, "cannot read the certificate of %s:%s: %s" % (check["host"], check["port"], exc))
        left = round(tls.days_left(cert), 2)
        details = {"not_after": cert["not_after"].strftime("%Y-%m-%dT%H:%M:%SZ"), "days_left": left,
                   "names": cert["dns_names"] + cert["ip_addresses"], "protocol": protocol}
        if not tls.hostname_matches(check["server_name"], cert):
            problems.append("the certificate is for %s, not %s" % (", ".join(details["names"]) or cert["subject_cn"],
                                                                   check["server_name"]))
        if left < check["min_days"]:
            problems.append("the certificate expires %s, in %.1f days, less than min_days %s"
                            % (details["not_after"], left, check["min_days"]))
        return sample_of(not problems, latency, "; ".join(problems) or None, **details)

    # --- containers and logs ------------------------------------------------------------------------------------

    def _project_containers(self, check):
        grouped = self.docker.containers(check["project"])
        grouped.pop(None, None)
        wanted = check["services"] or sorted(grouped)
        return grouped, wanted

    def _container(self, check):
        started = time.monotonic()
        grouped, wanted = self._project_containers(check)
        problems, rows = [], []
        if not grouped:
            return sample_of(False, _ms(started), "compose project %s has no containers" % check["project"])
        running_ids = []
        for service in wanted:
            infos = grouped.get(service) or []
            if not infos:
                problems.append("service %s has no container (the project has %s)" % (service, ", ".join(sorted(grouped))))
                continue
            running = [i for i in infos if (i.get("State") or {}).get("Running")]
            if not running:
                problems.append("service %s has no running container (%s)" % (
                    service, ", ".join("%s %s" % (_cname(i), _state_text(i)) for i in infos)))
            for info in infos:
                state = info.get("State") or {}
                health = (state.get("Health") or {}).get("Status")
                row = {"name": _cname(info), "id": info["Id"][:12], "service": service, "state": state.get("Status"), "health": health,
                       "restart_count": info.get("RestartCount", 0), "started_at": state.get("StartedAt"),
                       "image": (info.get("Config") or {}).get("Image"),
                       "memory_limit_bytes": (info.get("HostConfig") or {}).get("Memory") or None}
                rows.append(row)
                if state.get("Status") in ("restarting", "dead"):
                    problems.append("container %s is %s" % (row["name"], state.get("Status")))
                if not state.get("Running"):
                    continue
                running_ids.append(info["Id"])
                if check["require_healthy"] and health is not None and health != "healthy":
                    log = (state.get("Health") or {}).get("Log") or []
                    last = spec.scrub_text((log[-1].get("Output") if log else "") or "", 120)
                    problems.append("container %s is %s%s" % (row["name"], health, " (last check: %s)" % last if last else ""))
                if row["restart_count"] > check["max_restarts"]:
                    problems.append("container %s restarted %d times since it was created (max_restarts %d)"
                                    % (row["name"], row["restart_count"], check["max_restarts"]))
        if check["max_memory_ratio"] and running_ids:
            problems.extend(self._memory(check, running_ids, rows))
        return sample_of(not problems, _ms(started), "; ".join(problems) or None, containers=rows)

    def _memory(self, check, ids, rows):
        argv = [self.docker.docker, "stats", "--no-stream", "--no-trunc", "--format", "{{json .}}"] + ids
        rc, out, err = self.docker.run(argv, check=False)
        if rc != 0:
            return ["docker stats failed (rc=%s): %s" % (rc, spec.scrub_text(err or out, 200))]
        by_id = {}
        for line in out.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            by_id[item.get("ID") or item.get("Container")] = item
        problems = []
        for row in rows:
            item = next((v for k, v in by_id.items() if k and (k.startswith(row["id"]) or row["id"].startswith(k))), None)
            if item is None:
                continue
            try:
                ratio = float(str(item.get("MemPerc", "")).rstrip("%")) / 100.0
            except ValueError:
                continue
            row["memory_ratio"] = round(ratio, 4)
            row["memory_usage"] = item.get("MemUsage")
            if ratio > check["max_memory_ratio"]:
                limit = "its memory limit" if row["memory_limit_bytes"] else "the host's memory (it has no memory limit)"
                problems.append("container %s uses %.1f %% of %s, above max_memory_ratio %.0f %%"
                                % (row["name"], 100 * ratio, limit, 100 * check["max_memory_ratio"]))
        return problems

    def _logs(self, check):
        started = time.monotonic()
        grouped, wanted = self._project_containers(check)
        matches, examples, scanned, per_container, problems = 0, [], 0, {}, []
        for service in wanted:
            infos = grouped.get(service) or []
            if not infos:
                problems.append("service %s has no container whose logs could be read" % service)
            for info in infos:
                rc, out, err = self.docker.run([self.docker.docker, "logs", "--since", check["since"], info["Id"]],
                                               check=False)
                if rc != 0:
                    problems.append("docker logs %s failed (rc=%s): %s" % (_cname(info), rc, spec.scrub_text(err, 200)))
                    continue
                count = 0
                for line in (out + "\n" + err).splitlines():
                    if not line.strip():
                        continue
                    scanned += 1
                    if any(p.search(line) for p in check["patterns"]) and not any(p.search(line) for p in check["ignore_patterns"]):
                        count += 1
                        if len(examples) < 5:
                            examples.append("%s: %s" % (_cname(info), spec.scrub_text(line, 200)))
                per_container[_cname(info)] = count
                matches += count
        if matches > check["max_matches"]:
            problems.insert(0, "%d log line(s) since %s match the error patterns, more than max_matches %d; first: %s"
                            % (matches, check["since"], check["max_matches"], examples[0] if examples else "?"))
        return sample_of(not problems, _ms(started), "; ".join(problems) or None, matches=matches,
                         lines_scanned=scanned, per_container=per_container, examples=examples)

    # --- postgres ---------------------------------------------------------------------------------------------

    def _postgres(self, check):
        from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg
        started = time.monotonic()
        params = dict(check["connection"])
        try:
            conn = pg.connect(params, application_name=APPLICATION_NAME)
        except pg.PostgresError as exc:
            return sample_of(False, _ms(started), exc.msg)
        try:
            details, problems = postgres_health(conn, check)
        except pg.Error as exc:
            return sample_of(False, _ms(started), "the health queries failed: %s"
                             % spec.scrub_text(pg.Secrets(params).scrub(str(exc).strip()), 200))
        finally:
            conn.close()
        return sample_of(not problems, _ms(started), "; ".join(problems) or None, **details)


def _cname(info):
    return (info.get("Name") or info.get("Id", "")[:12]).lstrip("/")


def _state_text(info):
    state = info.get("State") or {}
    return "%s%s" % (state.get("Status"), "(%s)" % state.get("ExitCode") if state.get("Status") == "exited" else "")


_LITERAL_RE = re.compile(r"'(?:[^']|'')*'")


def _query_text(query):
    """A query as shown in results: string literals replaced (they may hold data or passwords), shortened."""
    return spec.scrub_text(_LITERAL_RE.sub("'?'", query or ""), 120)


def postgres_health(conn, check):
    """(details, problems): long-running queries, old lock waits and the share of max_connections in use."""
    scope = "" if check["all_databases"] else " AND a.datname = current_database()"
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", ("%dms" % int(check.get("timeout_s", 10) * 1000),))
        cur.execute("SELECT current_setting('max_connections')::int, current_setting('server_version_num')::int, "
                    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')")
        max_conn, version, used = cur.fetchone()
        cur.execute("SELECT a.pid, a.usename, a.application_name, a.datname, "
                    "EXTRACT(EPOCH FROM now() - a.query_start)::float8, a.query FROM pg_stat_activity a "
                    "WHERE a.state = 'active' AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend' "
                    "AND a.query_start < now() - make_interval(secs => %s)" + scope + " ORDER BY a.query_start",
                    (check["max_query_s"],))
        slow = cur.fetchall()
        since = "COALESCE(l.waitstart, a.query_start)" if version >= 140000 else "a.query_start"
        cur.execute("SELECT DISTINCT ON (a.pid) a.pid, a.usename, a.datname, EXTRACT(EPOCH FROM now() - " + since +
                    ")::float8, pg_blocking_pids(a.pid), a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE NOT l.granted AND " + since + " < now() - make_interval(secs => %s)" + scope,
                    (check["max_lock_wait_s"],))
        waits = cur.fetchall()
    problems = []
    details = {"connections": used, "max_connections": max_conn, "connection_ratio": round(used / float(max_conn), 4),
               "slow_queries": [{"pid": r[0], "user": r[1], "application_name": r[2], "database": r[3],
                                 "running_s": round(r[4], 1), "query": _query_text(r[5])} for r in slow],
               "lock_waits": [{"pid": r[0], "user": r[1], "database": r[2], "waiting_s": round(r[3], 1),
                               "blocked_by": list(r[4] or []), "query": _query_text(r[5])} for r in waits]}
    if slow:
        top = details["slow_queries"][0]
        problems.append("%d quer%s running longer than max_query_s %s s (longest: pid %s, %s s: %s)"
                        % (len(slow), "y is" if len(slow) == 1 else "ies are", check["max_query_s"], top["pid"],
                           top["running_s"], top["query"]))
    if waits:
        top = max(details["lock_waits"], key=lambda w: w["waiting_s"])
        problems.append("%d session(s) waiting for a lock longer than max_lock_wait_s %s s (longest: pid %s, %s s, "
                        "blocked by %s)" % (len(waits), check["max_lock_wait_s"], top["pid"], top["waiting_s"],
                                            ", ".join(str(p) for p in top["blocked_by"]) or "?"))
    if details["connection_ratio"] > check["max_connection_ratio"]:
        problems.append("%d of max_connections %d are in use (%s %%), above max_connection_ratio %s %%"
                        % (used, max_conn, round(100 * details["connection_ratio"], 1),
                           round(100 * check["max_connection_ratio"], 1)))
    return details, problems
