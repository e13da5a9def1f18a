#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: smoke_check
short_description: Smoke checks and the monitoring window of a release, run concurrently, with a rollback verdict
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Runs the smoke checks of the release runbooks in one task, all at once (O(concurrency) threads), and says which
    failed and why. Checks are HTTP requests with expectations (status, JSON fields, body, headers, served version,
    latency and p95), TCP connects, DNS lookups, TLS certificates (expiry and host name), the containers of a compose
    project (running, healthy, not restarted, memory), error lines in their logs, PostgreSQL health (long queries,
    lock waits, connections), and scenarios - ordered requests where a value captured from one answer (a token, an
    id) is used by later ones, with cleanup steps that always run (seed 002 - log in, create, fetch, export, clean up).
  - With O(wait), the checks are repeated until they all pass or the time is up (right after a rollout).
  - With O(window), the checks are sampled every O(window.interval_s) for O(window.duration_s) - the monitoring window
    after a release - and judged by the seeds' rollback rules. The result says whether a rollback is recommended,
    why, and with which evidence (samples, error rate, p95 and throughput per check, against a O(baseline)).
  - Bad input (an HTTP check without a URL, an unknown type, a negative duration, a bad regex or JSON path, a
    scenario step that uses a value no earlier step captures) fails before any request is sent, listing every
    problem.
  - Header values of C(Authorization), C(Cookie) and other credential headers, values captured by scenarios under
    credential-like names (C(token), C(session), ...) and O(secrets) never appear in the result.
  - Returns its part of the release data contract (C(smoke) or, for a window, C(monitor)) in RV(release_data).
extends_documentation_fragment:
  - runbook.release.attributes
requirements:
  - For C(container) and C(logs) checks, the Docker CLI on the host the task runs on.
  - For C(postgres) checks, psycopg2 on the host the task runs on (Debian C(python3-psycopg2), pip C(psycopg2-binary)).
options:
  checks:
    description:
      - The checks to run. Each is a dict with a O(checks[].name) and a O(checks[].type) (default V(http)); the
        options below say which types use them.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the check, unique in the task; results and the release record use it.
        type: str
        required: true
      type:
        description:
          - V(http) sends one request and checks the answer.
          - V(tcp) connects to O(checks[].host) and O(checks[].port) (or the host and port of O(checks[].url)).
          - V(dns) resolves O(checks[].host) with the system resolver (as the application would, C(/etc/hosts)
            included), optionally checking O(checks[].expect_addresses).
          - V(tls) reads the certificate of O(checks[].host):O(checks[].port) (default 443) and checks that it is
            valid for at least O(checks[].min_days) days and for the host name O(checks[].server_name).
          - V(container) checks the containers of compose project O(checks[].project) (O(checks[].services), default
            all) - running, healthy where they have a healthcheck, restarted at most O(checks[].max_restarts) times,
            and with O(checks[].max_memory_ratio) below that share of their memory limit.
          - V(logs) counts the lines of the services' container logs since O(checks[].since) that match
            O(checks[].patterns) and fails above O(checks[].max_matches).
          - V(postgres) connects with the C(login_*) options and fails on an active query older than
            O(checks[].max_query_s), a lock wait older than O(checks[].max_lock_wait_s), or more than
            O(checks[].max_connection_ratio) of C(max_connections) in use.
          - V(scenario) runs O(checks[].steps) in order.
        type: str
        default: http
        choices: [http, tcp, dns, tls, container, logs, postgres, scenario]
      critical:
        description:
          - A failed critical check fails the task; a failed non-critical one is reported in RV(failed_checks) and as
            a warning only.
          - In a O(window), any 5xx answer of a critical check recommends a rollback (seed 003, "any 5xx error on
            critical endpoints"); non-critical checks count towards the error rate and latency limits only.
        type: bool
        default: true
      run_in_check_mode:
        description:
          - Whether the check runs in check mode. Default is V(true) for checks that only read (every type but
            V(http) and V(scenario); V(http) with C(GET), C(HEAD) or C(OPTIONS); a scenario whose steps all use
            those) and V(false) otherwise - such checks are reported as skipped in check mode.
        type: bool
      timeout_s:
        description: Seconds a request, connection or lookup may take before the check fails.
        type: float
        default: 10
      samples:
        description:
          - How many times the check is run, one after the other, for O(checks[].max_p95_ms) (a window samples on
            its own schedule and ignores this).
        type: int
        default: 1
      max_p95_ms:
        description: The 95th percentile (nearest rank) of the check's latencies must be at most this.
        type: float
      max_error_rate:
        description:
          - Share of failed samples (0 to 1) the check tolerates, over its O(checks[].samples) or, in a window, over
            the window. Without it, any failed sample fails a smoke check; a window then judges the check by
            O(window.max_error_rate) only.
        type: float
      max_latency_ms:
        description: Every request (every step of a scenario) must answer within this many milliseconds.
        type: float
      url:
        description:
          - URL to request (V(http)); a path such as V(/api/version) is joined to O(base_url).
          - For V(tcp), V(tls) and V(dns), a URL whose host (and port) to use instead of O(checks[].host).
          - May use C(${secrets.<key>}) and C(${unique}) placeholders.
        type: str
      method:
        description: HTTP method.
        type: str
        default: GET
      headers:
        description:
          - Request headers. Values may use placeholders, such as C(Authorization - Bearer ${token}) in a scenario.
          - Values of C(Authorization), C(Proxy-Authorization), C(Cookie) and of headers whose name contains
            C(token), C(secret), C(password), C(api-key), C(auth), C(session) or C(cookie) are masked in everything
            the module returns. Ansible writes a module's arguments to the target's system log before the module
            starts, so put literal credentials in O(secrets) and use C(${secrets.<key>}) here.
        type: dict
      body:
        description: Request body, as text. Mutually exclusive with O(checks[].json).
        type: str
      json:
        description: Request body, sent as JSON with C(Content-Type application/json) unless O(checks[].headers) set one.
        type: raw
      expect_status:
        description:
          - Accepted HTTP statuses - a number (V(200)), a class (V(2xx)), a range (V(200-299)) or a list of them.
            Default is any 2xx.
        type: raw
      expect_json:
        description:
          - "Expectations on the JSON answer. Full form, a list of C({path, op, value}) - for example
            C({path: database, op: eq, value: connected}); C(op) defaults to C(eq)."
          - "Compact form, a dict of path to expected value - C({database: connected, status: ok}) - where a value
            that is a dict with one operator key is that comparison - C({items: {'>=': 1}})."
          - Paths are keys separated by dots with C([n]) for list items - C(items[0].id), C($.items[-1].name),
            C(a["key.with.dots"]).
          - Operators are C(eq) (C(==)), C(ne) (C(!=)), C(lt) (C(<)), C(le) (C(<=)), C(gt) (C(>)), C(ge) (C(>=)) for
            numbers, C(in) and C(not_in) (value is a list), C(contains) (text, list item or key), C(regex) (C(=~)),
            C(exists) (value V(true) or V(false)) and C(type) (V(string), V(number), V(integer), V(boolean),
            V(list), V(object), V(null)). C(eq) counts a number and its text as equal (C(1) and C('1')).
        type: raw
      expect_body:
        description: Regular expression (Python C(re.search)) the response body must match.
        type: str
      expect_headers:
        description:
          - Response headers - V(true) (present), V(false) (absent) or a regular expression the value must match;
            for example C(Strict-Transport-Security - true).
        type: dict
      expect_version:
        description:
          - The version the answer must report, from the JSON field O(checks[].version_field), or from the header
            O(checks[].version_header) when that is set. A mismatch fails with both versions in the reason.
        type: str
      version_field:
        description: JSON path of the version in the answer, for O(checks[].expect_version).
        type: str
        default: version
      version_header:
        description: Response header holding the version (for example V(X-App-Version)), instead of the JSON field.
        type: str
      validate_certs:
        description: Verify HTTPS and TLS certificates (chain and host name).
        type: bool
        default: true
      ca_path:
        description: File of CA certificates to verify HTTPS and TLS servers with, instead of the system's.
        type: path
      follow_redirects:
        description: Follow redirects of C(GET) and C(HEAD) requests. With V(false), a redirect is the answer.
        type: bool
        default: true
      steps:
        description:
          - The requests of a V(scenario), in order. Each takes the HTTP options of a check (O(checks[].url),
            O(checks[].method), O(checks[].headers), O(checks[].body), O(checks[].json), the C(expect_*) options,
            O(checks[].max_latency_ms), O(checks[].timeout_s), O(checks[].validate_certs), O(checks[].ca_path),
            O(checks[].follow_redirects); the last four default to the scenario's) plus the options below.
          - The scenario stops at the first failed step; then every O(checks[].steps[].cleanup) step runs, except
            those that need a value that was never captured (nothing was created for them to remove).
        type: list
        elements: dict
        suboptions:
          name:
            description: Name of the step, for the result. Default V(step<n>).
            type: str
          cleanup:
            description: A cleanup step, run after the others whatever happened to them.
            type: bool
            default: false
          capture:
            description:
              - Values to take from the answer for later steps, as C(name - source), used as C(${name}). A source
                is a JSON path (V(token), V(json:items[0].id)), V(header:<Name>) or V(status).
              - A source may also be a dict C({from - <source>, secret - true}). A capture is secret when it says so,
                when its name contains C(token), C(secret), C(password), C(session), C(cookie), C(auth), C(api_key),
                C(jwt) or C(sid), or when it comes from a credential header; a secret value is masked in
                everything the module returns.
            type: dict
          url:
            description: See O(checks[].url).
            type: str
          method:
            description: See O(checks[].method).
            type: str
            default: GET
          headers:
            description: See O(checks[].headers).
            type: dict
          body:
            description: See O(checks[].body).
            type: str
          json:
            description: See O(checks[].json).
            type: raw
          expect_status:
            description: See O(checks[].expect_status).
            type: raw
          expect_json:
            description: See O(checks[].expect_json).
            type: raw
          expect_body:
            description: See O(checks[].expect_body).
            type: str
          expect_headers:
            description: See O(checks[].expect_headers).
            type: dict
          expect_version:
            description: See O(checks[].expect_version).
            type: str
          version_field:
            description: See O(checks[].version_field).
            type: str
            default: version
          version_header:
            description: See O(checks[].version_header).
            type: str
          max_latency_ms:
            description: See O(checks[].max_latency_ms).
            type: float
          timeout_s:
            description: See O(checks[].timeout_s). Default is the scenario's.
            type: float
          validate_certs:
            description: See O(checks[].validate_certs). Default is the scenario's.
            type: bool
          ca_path:
            description: See O(checks[].ca_path). Default is the scenario's.
            type: path
          follow_redirects:
            description: See O(checks[].follow_redirects). Default is the scenario's.
            type: bool
      host:
        description: Host name or address for V(tcp), V(tls) and V(dns) (the name to resolve).
        type: str
      port:
        description: Port for V(tcp) and V(tls) (V(tls) defaults to 443).
        type: int
      server_name:
        description: Host name the V(tls) certificate must be valid for, also sent as SNI. Default is O(checks[].host).
        type: str
      min_days:
        description: Days the V(tls) certificate must stay valid at least.
        type: int
        default: 14
      expect_addresses:
        description: Addresses the V(dns) name must resolve to (each of them among the answers).
        type: list
        elements: str
      family:
        description: Address family of the V(dns) lookup.
        type: str
        default: any
        choices: [any, ipv4, ipv6]
      project:
        description: Compose project name (the C(com.docker.compose.project) label) for V(container) and V(logs).
        type: str
      services:
        description: Services of O(checks[].project) to check. Default is every service that has a container.
        type: list
        elements: str
      require_healthy:
        description: For V(container), a running container with a healthcheck must be C(healthy) (not C(starting)).
        type: bool
        default: true
      max_restarts:
        description:
          - For V(container), restarts allowed per container. Docker counts them from the container's creation; a
            rollout creates new containers, so after a rollout this counts the restarts since the rollout.
        type: int
        default: 0
      max_memory_ratio:
        description:
          - For V(container), the share (0 to 1) of its memory limit a container may use, from C(docker stats).
            A container without a memory limit is measured against the host's memory. Not checked when not set
            (C(docker stats) takes about 2 s).
        type: float
      since:
        description:
          - For V(logs), where the logs start - a duration (V(10m), V(90s)) or a time (V(2031-03-01T10:00:00Z)),
            for example the time the rollout started. Logs of containers removed since are not read.
        type: str
        default: 5m
      patterns:
        description:
          - For V(logs), regular expressions of error lines. Default matches C("level":"error") (and
            C(critical), C(fatal)) in JSON lines, C(Traceback), C(panic), C(fatal error), C(unhandled exception),
            and lines starting with C(ERROR), C(FATAL) or C(CRITICAL).
        type: list
        elements: str
      ignore_patterns:
        description: For V(logs), lines matching one of these regular expressions are not counted.
        type: list
        elements: str
      max_matches:
        description: For V(logs), matching lines allowed.
        type: int
        default: 0
      max_query_s:
        description: For V(postgres), seconds an active query may run.
        type: float
        default: 30
      max_lock_wait_s:
        description: For V(postgres), seconds a session may wait for a lock.
        type: float
        default: 30
      max_connection_ratio:
        description: For V(postgres), the share of C(max_connections) that may be in use (seed 002, under 80 %).
        type: float
        default: 0.8
      all_databases:
        description:
          - For V(postgres), judge queries and lock waits of every database, not only O(checks[].login_db). A role
            sees the query start of other roles' sessions only with C(pg_read_all_stats) (C(pg_monitor)).
        type: bool
        default: false
      login_host:
        description: For V(postgres), see the C(runbook.release.postgres) options of M(runbook.release.migration_apply).
        type: str
      login_port:
        description: For V(postgres), server port.
        type: int
      login_user:
        description: For V(postgres), role to connect as.
        type: str
      login_password:
        description: For V(postgres), password of O(checks[].login_user); never shown.
        type: str
      login_db:
        description: For V(postgres), database to connect to.
        type: str
      login_unix_socket:
        description: For V(postgres), directory of the server's Unix socket.
        type: str
      connect_timeout:
        description: For V(postgres), seconds to wait for the connection.
        type: int
        default: 10
      dsn:
        description: For V(postgres), a libpq connection string instead of the C(login_*) options; never shown.
        type: str
      ssl_mode:
        description: For V(postgres), libpq C(sslmode).
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      ca_cert:
        description: For V(postgres), CA file for the server certificate (libpq C(sslrootcert)).
        type: path
      ssl_cert:
        description: For V(postgres), client certificate (libpq C(sslcert)).
        type: path
      ssl_key:
        description: For V(postgres), key of the client certificate (libpq C(sslkey)).
        type: path
  base_url:
    description: Base URL that relative O(checks[].url) paths (V(/health)) are joined to.
    type: str
  secrets:
    description:
      - Named secret values (tokens, passwords) that checks use as C(${secrets.<key>}) in URLs, headers and bodies.
        Ansible keeps them out of logs and results (C(no_log)).
    type: dict
  concurrency:
    description: How many checks run at the same time.
    type: int
    default: 16
  wait:
    description:
      - Repeat the checks until all of them pass, or O(wait.timeout_s) is over - right after a rollout, when the
        new version may still be starting. The result is the last attempt's. Mutually exclusive with O(window).
    type: dict
    suboptions:
      timeout_s:
        description: Seconds to keep trying.
        type: float
        required: true
      interval_s:
        description: Seconds between the starts of two attempts.
        type: float
        default: 2
  window:
    description:
      - Monitor instead of checking once - sample every check every O(window.interval_s) for O(window.duration_s)
        and recommend a rollback (RV(rollback_recommended)) when a rule below is broken. Samples of a check are
        sent one at a time, the next O(window.interval_s) after the previous was sent or as soon as it returns.
      - "Rules, most severe first: any 5xx of a critical check; O(window.consecutive_failures) failed samples of a
        check in a row; error rate above O(window.max_error_rate) (all samples) or a check's own
        O(checks[].max_error_rate); p95 above O(window.max_p95_ms) (all samples) or a check's own
        O(checks[].max_p95_ms); relative to the O(baseline), a check's p95 above O(window.p95_baseline_factor) x
        its baseline p95 and its throughput (successful answers per second) below O(window.min_throughput_ratio)
        x its baseline throughput; and checks without enough samples, as O(window.no_data) says."
    type: dict
    suboptions:
      duration_s:
        description: Length of the window in seconds.
        type: float
        required: true
      interval_s:
        description: Seconds between two samples of a check.
        type: float
        default: 5
      max_error_rate:
        description: Share of failed samples (0 to 1) over the whole window above which a rollback is recommended.
        type: float
        default: 0.01
      max_p95_ms:
        description: p95 latency (all samples) above which a rollback is recommended.
        type: float
      consecutive_failures:
        description: Failed samples of one check in a row that recommend a rollback; V(0) turns the rule off.
        type: int
        default: 3
      min_samples:
        description: Samples a check needs to be judged; fewer is "no data".
        type: int
        default: 3
      no_data:
        description:
          - What a check with fewer than O(window.min_samples) samples means. V(fail) fails the task without a
            verdict (the monitoring could not judge), V(rollback) recommends a rollback, V(pass) judges on what there is.
        type: str
        default: fail
        choices: [fail, rollback, pass]
      critical_5xx:
        description: Whether any 5xx of a critical check recommends a rollback.
        type: bool
        default: true
      p95_baseline_factor:
        description: A check's p95 above this many times its baseline p95 recommends a rollback (seed 002, 3x); V(0) turns it off.
        type: float
        default: 3.0
      baseline_p95_floor_ms:
        description:
          - Baseline p95s below this count as this much for O(window.p95_baseline_factor), so that a 2 ms
            baseline does not make 7 ms a reason to roll back.
        type: float
        default: 50
      min_throughput_ratio:
        description:
          - A check's throughput below this share of its baseline throughput recommends a rollback (seed 003, a
            20 % drop); V(0) turns it off. Compared only with a baseline sampled at the same O(window.interval_s).
        type: float
        default: 0.8
      baseline_duration_s:
        description:
          - Without O(baseline), sample this many seconds first and use that as the baseline (for a window started
            before the rollout, for example with C(async)). V(0) means no baseline.
        type: float
        default: 0
      stop_early:
        description: End the window as soon as a rule that later samples cannot undo (a critical 5xx, a failure streak) is broken.
        type: bool
        default: true
  baseline:
    description:
      - Figures to judge the window against, as returned in RV(baseline) by an earlier run of this module on the same
        checks (by name) - typically a window run before the rollout.
    type: dict
  fail_on_rollback_recommended:
    description: Fail the task when the window recommends a rollback. With V(false), only report it.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - Smoke checks only read, so they run in check mode too and report real results. HTTP checks with other
        methods than C(GET), C(HEAD) and C(OPTIONS), and scenarios with such steps, are skipped unless they set
        O(checks[].run_in_check_mode=true).
  diff_mode:
    support: none
  idempotent:
    support: full
    details: The module never changes anything it manages (C(changed=false)); scenario steps clean up what they create.
notes:
  - Percentiles are nearest-rank - p95 of 20 samples is the 19th fastest.
  - Throughput in a window is the rate of successful answers the prober gets; it drops when answers fail or take
    longer than O(window.interval_s). It is not the site's user traffic.
  - Run checks that must see the service from outside on the controller (C(delegate_to - localhost)) and
    container, logs and database checks on the host that runs them.
seealso:
  - module: runbook.release.compose_rollout
    description: Rolls the release these checks verify.
  - module: ansible.builtin.uri
    description: One request per task.
"""

EXAMPLES = r"""
- name: Smoke checks after the rollout (retry for two minutes while the new version starts)
  runbook.release.smoke_check:
    base_url: https://app.example.com
    wait:
      timeout_s: 120
    checks:
      - name: health
        url: /health
        max_latency_ms: 500
      - name: readiness
        url: /readiness
        expect_json: {status: ready, database: connected}
      - name: version
        url: /api/version
        expect_version: "{{ version }}"
      - name: db
        url: /api/db
        expect_json:
          - {path: database, op: eq, value: connected}
          - {path: latency_ms, op: lt, value: 100}
      - name: hsts
        url: /health
        expect_headers:
          Strict-Transport-Security: true
      - name: certificate
        type: tls
        url: https://app.example.com
        min_days: 14
  delegate_to: localhost
  register: smoke

- name: Hand the verdict to the deployment record
  ansible.builtin.set_stats:
    data:
      runbook_release: "{{ smoke.release_data }}"
    aggregate: true

- name: The seed 002 scenario - log in, create, fetch, export, clean up
  runbook.release.smoke_check:
    base_url: https://app.example.com
    secrets:
      password: "{{ smoke_user_password }}"
    checks:
      - name: item-lifecycle
        type: scenario
        max_latency_ms: 2000
        steps:
          - name: login
            method: POST
            url: /api/login
            json: {username: smoke, password: "${secrets.password}"}
            capture: {token: token}
          - name: create
            method: POST
            url: /api/items
            headers: {Authorization: "Bearer ${token}"}
            json: {name: "smoke-${unique}"}
            expect_status: 201
            capture: {item_id: id}
          - name: fetch
            url: /api/items/${item_id}
            headers: {Authorization: "Bearer ${token}"}
            expect_json: {name: "smoke-${unique}"}
          - name: export
            url: /api/items/export
            headers: {Authorization: "Bearer ${token}"}
            expect_body: "smoke-${unique}"
          - name: delete
            cleanup: true
            method: DELETE
            url: /api/items/${item_id}
            headers: {Authorization: "Bearer ${token}"}
            expect_status: 204
  delegate_to: localhost

- name: The stack and its database, on the app server
  runbook.release.smoke_check:
    checks:
      - name: containers
        type: container
        project: app
        max_memory_ratio: 0.85
      - name: error-logs
        type: logs
        project: app
        services: [api, worker]
        since: "{{ rollout_started_at }}"
      - name: database
        type: postgres
        login_host: 127.0.0.1
        login_user: monitor
        login_password: "{{ monitor_db_password }}"
        login_db: app
        max_query_s: 30

- name: Baseline before the rollout
  runbook.release.smoke_check:
    base_url: https://app.example.com
    window: {duration_s: 60, interval_s: 2}
    checks: &monitored
      - {name: version, url: /api/version}
      - {name: items, url: "/api/items?limit=5", critical: false, expect_status: [200, 401]}
  delegate_to: localhost
  register: before

- name: Monitoring window after the rollout, judged against the baseline
  runbook.release.smoke_check:
    base_url: https://app.example.com
    window:
      duration_s: 300
      interval_s: 2
      max_error_rate: 0.01
      max_p95_ms: 200
    baseline: "{{ before.baseline }}"
    fail_on_rollback_recommended: false
    checks: *monitored
  delegate_to: localhost
  register: monitor

- name: Roll back when the window says so
  runbook.release.compose_rollout:
    project_src: /opt/app
    rollback_to: previous
  when: monitor.rollback_recommended
"""

RETURN = r"""
passed:
  description: Every check passed (for a window, no rollback is recommended).
  returned: always
  type: bool
failed_checks:
  description: Names of the checks that failed (for a window, those a rule names or that had failed samples).
  returned: always
  type: list
  elements: str
  sample: [version]
results:
  description: One entry per check, in the order of O(checks).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Name of the check., type: str, returned: always}
    type: {description: Type of the check., type: str, returned: always}
    status: {description: "V(passed), V(failed) or V(skipped) (check mode).", type: str, returned: always}
    critical: {description: Whether the check is critical., type: bool, returned: always}
    reason: {description: Why it failed or was skipped; null when it passed., type: str, returned: always}
    latency_ms: {description: Median latency of the samples (the latency of the one sample by default)., type: float,
                 returned: always}
    p95_ms: {description: p95 latency of the samples., type: float, returned: always}
    samples: {description: Samples taken., type: int, returned: always}
    error_rate: {description: Share of failed samples., type: float, returned: always}
    details:
      description:
        - What the last sample saw - C(version) for HTTP checks, C(days_left), C(not_after) and C(names) for TLS,
          C(addresses) for DNS, C(containers) for containers, C(matches) and C(examples) for logs, C(connections),
          C(slow_queries) and C(lock_waits) for PostgreSQL, C(steps) (name, method, URL, status, latency, reason,
          captured non-secret values) for scenarios.
      type: dict
      returned: always
    window:
      description:
        - In a window, the check's figures - samples, failures, error_rate, p50_ms, p95_ms, max_ms, throughput_rps,
          statuses, five_xx, max_consecutive_failures, example_failures.
      type: dict
      returned: with O(window)
duration_ms:
  description: Wall time of the task's checks in milliseconds.
  returned: always
  type: float
attempts:
  description: Rounds of checks run with O(wait).
  returned: with O(wait)
  type: int
rollback_recommended:
  description: The window broke a rollback rule.
  returned: with O(window)
  type: bool
reason:
  description: The most severe broken rule, in words; null when none.
  returned: with O(window)
  type: str
  sample: "critical check version answered 5xx (500 x2) in 2 of 61 samples"
reasons:
  description: Every broken rule, most severe first.
  returned: with O(window)
  type: list
  elements: str
error_rate:
  description: Share of failed samples over the whole window.
  returned: with O(window)
  type: float
p95_ms:
  description: p95 latency over every sample of the window.
  returned: with O(window)
  type: float
evidence:
  description: What the verdict rests on - per check figures, the baseline's figures, whether the window stopped early.
  returned: with O(window)
  type: dict
baseline:
  description:
    - Figures to pass as O(baseline) to a later window - per check C(samples), C(error_rate), C(p95_ms) and
      C(throughput_rps), with C(interval_s) and C(measured_at). For a window, the baseline it was judged against
      (passed in, or sampled with O(window.baseline_duration_s)), or its own figures when it had none.
  returned: always
  type: dict
release_data:
  description:
    - This task's part of the release data contract, for C(ansible.builtin.set_stats) under C(runbook_release) -
      C(smoke) (C(passed), C(failed_checks), C(checked_at)) or, with O(window), C(monitor) (C(passed),
      C(rollback_recommended), C(reason), C(error_rate), C(p95_ms)).
  returned: always
  type: dict
  sample: {smoke: {passed: true, failed_checks: [], checked_at: "2031-03-01T10:15:00.000000Z"}}
commands:
  description: Docker CLI commands run for container and logs checks.
  returned: when such checks ran
  type: list
  elements: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils import _smoke_judge as judge
from ansible_collections.runbook.release.plugins.module_utils import _smoke_spec as spec
from ansible_collections.runbook.release.plugins.module_utils._pg_options import connection_argument_spec
from ansible_collections.runbook.release.plugins.module_utils._release_data import utc_now
from ansible_collections.runbook.release.plugins.module_utils._smoke_probes import Probes
from ansible_collections.runbook.release.plugins.module_utils._smoke_runner import Runner


class SmokeCheck:
    """Validates everything first, then runs the checks once, until they pass, or over a window."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.started = time.monotonic()
        self.checked_at = utc_now()
        self.result = {"changed": False}

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, **dict(self.result, **extra))

    def validate(self):
        # Before anything can fail: credentials written into headers and URLs are masked in every result.
        self.module.no_log_values.update(str(v) for v in spec.literal_secrets(self.p["checks"]))
        problems = []
        try:
            self.checks = spec.normalize_checks(self.p["checks"], self.p["base_url"], self.p["secrets"] or {})
        except spec.SpecError as exc:
            problems.extend(exc.problems)
            self.checks = []
        if self.p["concurrency"] < 1:
            problems.append("concurrency=%s must be 1 or more" % self.p["concurrency"])
        for option, names in (("wait", ("timeout_s", "interval_s")),
                              ("window", ("baseline_duration_s", "max_p95_ms", "consecutive_failures", "min_samples",
                                          "p95_baseline_factor", "baseline_p95_floor_ms", "min_throughput_ratio"))):
            for name in names:
                value = (self.p[option] or {}).get(name)
                if value is not None and value < 0:
                    problems.append("%s.%s=%s must not be negative" % (option, name, spec.num(value)))
        window = self.p["window"] or {}
        if window:
            for name in ("duration_s", "interval_s"):
                if window[name] <= 0:
                    problems.append("window.%s=%s must be more than 0" % (name, spec.num(window[name])))
            for name in ("max_error_rate", "min_throughput_ratio"):
                if window.get(name) is not None and not 0 <= window[name] <= 1:
                    problems.append("window.%s=%s must be between 0 and 1" % (name, window[name]))
        problems.extend(judge.baseline_problems(self.p["baseline"]))
        if problems:
            self.fail("smoke_check refused the task before sending anything: %s" % "; ".join(problems), problems=problems)
        if any(c["type"] == "postgres" for c in self.checks):
            from ansible_collections.runbook.release.plugins.module_utils._postgres import ensure_psycopg2
            ensure_psycopg2(self.module)

    def run(self):
        self.validate()
        self.probes = Probes(self.module, self.p["secrets"], unique=os.urandom(5).hex())
        self.runner = Runner(self.probes.sample, self.p["concurrency"])
        self.skipped = {}
        if self.module.check_mode:
            self.skipped = {c["name"]: "skipped in check mode: it sends %s requests; set run_in_check_mode to run it"
                            % "/".join(sorted({s["method"] for s in c.get("steps") or [c]} - set(spec.SAFE_METHODS)))
                            for c in self.checks if not c["run_in_check_mode"]}
        active = [c for c in self.checks if c["name"] not in self.skipped]
        if any(c["type"] in ("container", "logs") for c in active):
            # Find the docker CLI here, where a missing one can fail the task, not in a probe thread.
            self.probes.ensure_docker()
        if self.p["window"]:
            self.window(active)
        else:
            self.smoke(active)
        if self.probes.commands:
            self.result["commands"] = list(self.probes.commands)
        self.module.exit_json(**self.result)

    # --- smoke ----------------------------------------------------------------------------------------------------

    def _verdicts(self, outcome):
        verdicts = {}
        for check in self.checks:
            if check["name"] in outcome:
                samples, elapsed = outcome[check["name"]]
                summary = judge.summarize(samples, elapsed)
                verdicts[check["name"]] = (judge.check_verdict(check, summary), summary, samples)
        return verdicts

    def smoke(self, active):
        wait = self.p["wait"]
        if wait:
            def passed(outcome):
                return all(v[0][0] for v in self._verdicts(outcome).values())
            outcome, attempts = self.runner.run_until(active, passed, wait["timeout_s"], wait["interval_s"])
            self.result["attempts"] = attempts
        else:
            outcome = self.runner.run_once(active)
        verdicts = self._verdicts(outcome)
        results, failed, critical = [], [], []
        for check in self.checks:
            if check["name"] in self.skipped:
                results.append(self._entry(check, "skipped", self.skipped[check["name"]]))
                continue
            (ok, reason), summary, samples = verdicts[check["name"]]
            results.append(self._entry(check, "passed" if ok else "failed", reason, summary, samples))
            if not ok:
                failed.append(check["name"])
                if check["critical"]:
                    critical.append("%s (%s)" % (check["name"], reason))
                else:
                    self.module.warn("non-critical check %s failed: %s" % (check["name"], reason))
        summaries = {name: v[1] for name, v in verdicts.items()}
        self.result.update(
            passed=not failed, failed_checks=failed, results=results, duration_ms=self._duration(),
            baseline=judge.build_baseline(summaries, 0, self._duration() / 1000.0, self.checked_at),
            release_data={"smoke": {"passed": not failed, "failed_checks": failed, "checked_at": self.checked_at}})
        if critical:
            self.fail("%d critical smoke check(s) failed: %s" % (len(critical), "; ".join(critical)))

    def _entry(self, check, status, reason, summary=None, samples=None):
        summary = summary or judge.summarize([])
        entry = {"name": check["name"], "type": check["type"], "status": status, "critical": check["critical"],
                 "reason": reason, "latency_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"],
                 "samples": summary["samples"], "error_rate": summary["error_rate"],
                 "details": dict((samples or [{}])[-1].get("details") or {})}
        return entry

    def _duration(self):
        return round((time.monotonic() - self.started) * 1000.0, 1)

    # --- window ---------------------------------------------------------------------------------------------------

    def window(self, active):
        window = dict(self.p["window"])
        baseline = self.p["baseline"]
        if baseline is None and window["baseline_duration_s"] > 0:
            samples, elapsed, _stopped = self.runner.run_window(active, window["baseline_duration_s"], window["interval_s"])
            baseline = judge.build_baseline({n: judge.summarize(s, elapsed) for n, s in samples.items()},
                                            window["interval_s"], elapsed, utc_now())

        def stop(samples):
            if not window["stop_early"]:
                return None
            summaries = {name: judge.summarize(items) for name, items in samples.items()}
            reasons = judge.decisive_reasons(active, summaries, window)
            return reasons[0] if reasons else None

        samples, elapsed, stopped = self.runner.run_window(active, window["duration_s"], window["interval_s"], stop)
        summaries = {name: judge.summarize(items, elapsed) for name, items in samples.items()}
        verdict = judge.judge_window(active, summaries, samples, window, baseline, stopped_early=bool(stopped))
        named = verdict["check_reasons"]
        failed = [c["name"] for c in active if c["name"] in named or summaries[c["name"]]["failures"]]
        results = []
        for check in self.checks:
            if check["name"] in self.skipped:
                results.append(self._entry(check, "skipped", self.skipped[check["name"]]))
                continue
            summary = summaries[check["name"]]
            reason = (named.get(check["name"]) or summary["example_failures"] or [None])[0]
            entry = self._entry(check, "failed" if check["name"] in failed else "passed", reason, summary,
                                samples[check["name"]])
            entry["window"] = summary
            results.append(entry)
        for note in verdict["notes"]:
            self.module.warn(note)
        passed = not verdict["rollback_recommended"] and not verdict["no_data_failure"]
        monitor = {"passed": passed, "rollback_recommended": verdict["rollback_recommended"], "reason": verdict["reason"]}
        monitor.update((k, verdict[k]) for k in ("error_rate", "p95_ms") if verdict[k] is not None)
        own = judge.build_baseline(summaries, window["interval_s"], elapsed, self.checked_at)
        self.result.update(
            passed=passed, failed_checks=failed, results=results, duration_ms=self._duration(),
            rollback_recommended=verdict["rollback_recommended"], reason=verdict["reason"], reasons=verdict["reasons"],
            error_rate=verdict["error_rate"], p95_ms=verdict["p95_ms"], baseline=baseline or own,
            evidence={"window_s": round(elapsed, 3), "interval_s": window["interval_s"], "stopped_early": stopped,
                      "samples": sum(s["samples"] for s in summaries.values()), "checks": summaries,
                      "baseline": (baseline or {}).get("checks"), "notes": verdict["notes"]},
            release_data={"monitor": monitor})
        if verdict["no_data_failure"]:
            self.fail("the monitoring window could not judge %s: %s; lengthen window.duration_s or lower "
                      "window.min_samples (or set window.no_data)" % (", ".join(verdict["no_data"]), verdict["notes"][-1]))
        if verdict["rollback_recommended"] and self.p["fail_on_rollback_recommended"]:
            self.fail("rollback recommended: %s" % verdict["reason"])


def http_options(step=False):
    """Options of an HTTP request and its expectations, for a check or (``step``) a scenario step."""
    return {
        "url": {"type": "str"},
        "method": {"type": "str", "default": "GET"},
        "headers": {"type": "dict"},
        "body": {"type": "str"},
        "json": {"type": "raw"},
        "expect_status": {"type": "raw"},
        "expect_json": {"type": "raw"},
        "expect_body": {"type": "str"},
        "expect_headers": {"type": "dict"},
        "expect_version": {"type": "str"},
        "version_field": {"type": "str", "default": "version"},
        "version_header": {"type": "str"},
        "max_latency_ms": {"type": "float"},
        # A step without these takes the scenario's, so they have no default of their own.
        "timeout_s": {"type": "float"} if step else {"type": "float", "default": 10},
        "validate_certs": {"type": "bool"} if step else {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "follow_redirects": {"type": "bool"} if step else {"type": "bool", "default": True},
    }


def argument_spec():
    postgres = connection_argument_spec()
    check = http_options()
    check.update(postgres["argument_spec"])
    step = http_options(step=True)
    step.update(name={"type": "str"}, cleanup={"type": "bool", "default": False}, capture={"type": "dict"})
    check.update(
        name={"type": "str", "required": True},
        type={"type": "str", "default": "http", "choices": list(spec.CHECK_TYPES)},
        critical={"type": "bool", "default": True},
        run_in_check_mode={"type": "bool"},
        samples={"type": "int", "default": 1},
        max_p95_ms={"type": "float"},
        max_error_rate={"type": "float"},
        steps={"type": "list", "elements": "dict", "options": step},
        host={"type": "str"},
        port={"type": "int"},
        server_name={"type": "str"},
        min_days={"type": "int", "default": 14},
        expect_addresses={"type": "list", "elements": "str"},
        family={"type": "str", "default": "any", "choices": ["any", "ipv4", "ipv6"]},
        project={"type": "str"},
        services={"type": "list", "elements": "str"},
        require_healthy={"type": "bool", "default": True},
        max_restarts={"type": "int", "default": 0},
        max_memory_ratio={"type": "float"},
        since={"type": "str", "default": "5m"},
        patterns={"type": "list", "elements": "str"},
        ignore_patterns={"type": "list", "elements": "str"},
        max_matches={"type": "int", "default": 0},
        max_query_s={"type": "float", "default": 30},
        max_lock_wait_s={"type": "float", "default": 30},
        max_connection_ratio={"type": "float", "default": 0.8},
        all_databases={"type": "bool", "default": False},
    )
    return {
        "argument_spec": {
            "checks": {"type": "list", "elements": "dict", "required": True, "options": check,
                       "mutually_exclusive": postgres["mutually_exclusive"] + [["body", "json"]]},
            "base_url": {"type": "str"},
            "secrets": {"type": "dict", "no_log": True},
            "concurrency": {"type": "int", "default": 16},
            "wait": {"type": "dict", "options": {"timeout_s": {"type": "float", "required": True},
                                                 "interval_s": {"type": "float", "default": 2}}},
            "window": {"type": "dict", "options": {
                "duration_s": {"type": "float", "required": True},
                "interval_s": {"type": "float", "default": 5},
                "max_error_rate": {"type": "float", "default": 0.01},
                "max_p95_ms": {"type": "float"},
                "consecutive_failures": {"type": "int", "default": 3},
                "min_samples": {"type": "int", "default": 3},
                "no_data": {"type": "str", "default": "fail", "choices": list(judge.NO_DATA_POLICIES)},
                "critical_5xx": {"type": "bool", "default": True},
                "p95_baseline_factor": {"type": "float", "default": 3.0},
                "baseline_p95_floor_ms": {"type": "float", "default": 50},
                "min_throughput_ratio": {"type": "float", "default": 0.8},
                "baseline_duration_s": {"type": "float", "default": 0},
                "stop_early": {"type": "bool", "default": True},
            }},
            "baseline": {"type": "dict"},
            "fail_on_rollback_recommended": {"type": "bool", "default": True},
        },
        "mutually_exclusive": [["wait", "window"]],
    }


def main():
    module = AnsibleModule(supports_check_mode=True, **argument_spec())
    SmokeCheck(module).run()


if __name__ == "__main__":
    main()
