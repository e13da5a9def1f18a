# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""SQL migration files and the plan to apply or revert them: pure, no database here (see _migration_db.py).

- ``scan()`` reads a directory of ``V<version>__<name>.sql`` files with their optional ``.down.sql`` and
  ``.verify.sql`` companions and the ``-- runbook: ...`` directives at the top of each file.
- ``split_statements()`` splits a script the way psql does: quotes, E'' strings, quoted identifiers,
  dollar quoting, nested block comments, parentheses and ``BEGIN ATOMIC`` bodies are respected, and each
  statement keeps the line it starts on.
- ``autocommit_reason()`` names statements that PostgreSQL refuses inside a transaction block, and
  ``gate_findings()`` the destructive or blocking ones that need an explicit allowance.
- ``make_plan()`` compares the files with the history and says what a run does, or why it must not.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re

DIRECTIVES = ("no-transaction", "breaks-previous", "irreversible", "allow-destructive")
MARKERS = ("breaks-previous", "irreversible")
FILE_RE = re.compile(r"^V(?P<version>\d+(?:[._]\d+)*)__(?P<name>.+?)(?:\.(?P<kind>down|verify))?\.sql$")
DIRECTIVE_RE = re.compile(r"^\s*--\s*runbook\s*:(?P<rest>.*)$", re.IGNORECASE)

GATE_RULES = {
    "drop_table": "drops a table and its data",
    "drop_schema": "drops a schema and everything in it",
    "drop_database": "drops a database",
    "drop_column": "drops a column and its data",
    "truncate": "empties a table",
    "delete_without_where": "deletes every row (DELETE without WHERE)",
    "update_without_where": "rewrites every row (UPDATE without WHERE)",
    "alter_column_type": "changes a column type (table rewrite under an exclusive lock, possible data loss)",
    "set_not_null": "SET NOT NULL scans the whole table under an exclusive lock and fails on existing NULLs",
    "create_index_blocking": "CREATE INDEX without CONCURRENTLY blocks writes to an existing table for the whole build",
    "rename_table": "renames a table (code still using the old name breaks)",
    "rename_column": "renames a column (code still using the old name breaks)",
}
# A rename loses no data: its only hazard is that the previous application version breaks, which is exactly what
# the breaks-previous directive declares (and what the rollback runbook reads from the markers).
RULES_ALLOWED_BY_BREAKS_PREVIOUS = ("rename_table", "rename_column")


class MigrationError(Exception):
    """A problem with the migration files or the plan; ``msg`` names the file, line and what to do."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


# --- versions ----------------------------------------------------------------------------------------------------

def version_key(text):
    """``V004``, ``004``, ``4``, ``1.2`` or ``1_2`` as a comparable tuple (trailing zero parts ignored)."""
    value = str(text).strip()
    if value[:1] in ("V", "v"):
        value = value[1:]
    if not re.match(r"^\d+(?:[._]\d+)*$", value):
        raise ValueError("%r is not a migration version (use the number of a V<number>__<name>.sql file, for "
                         "example V004 or 4)" % text)
    parts = [int(part) for part in re.split(r"[._]", value)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def leading_version_key(text):
    """The version at the start of a foreign tool's id (``20240101120000_init`` -> (20240101120000,)), or None."""
    match = re.match(r"^[Vv]?(\d+(?:[._]\d+)*)", str(text).strip())
    return version_key(match.group(1)) if match else None


# --- lexing and splitting ------------------------------------------------------------------------------------------

class Token(object):
    __slots__ = ("kind", "start", "end", "value", "depth")

    def __init__(self, kind, start, end, value=None, depth=0):
        self.kind = kind
        self.start = start
        self.end = end
        self.value = value
        self.depth = depth


_SPACE_RE = re.compile(r"\s+")
_WORD_RE = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_NUM_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DOLLAR_RE = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_PARAM_RE = re.compile(r"\$\d+")


class _Lines(object):
    """Offset to 1-based line number."""

    def __init__(self, text):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line(self, offset):
        return bisect.bisect_right(self.starts, offset)


def lex(sql):
    """Tokens of an SQL script: space, comment, string, qident, word, number, param, op, meta (a psql
    backslash command), and single characters ( ) , . ; as their own kinds. Raises MigrationError on an
    unterminated quote or comment, with the line it starts on."""
    tokens = []
    pos, size = 0, len(sql)
    lines = None
    while pos < size:
        ch = sql[pos]
        nxt = sql[pos + 1] if pos + 1 < size else ""
        start = pos
        if ch.isspace():
            pos = _SPACE_RE.match(sql, pos).end()
            tokens.append(Token("space", start, pos))
            continue
        if ch == "-" and nxt == "-":
            end = sql.find("\n", pos)
            pos = size if end < 0 else end
            tokens.append(Token("comment", start, pos))
            continue
        if ch == "/" and nxt == "*":
            depth, pos = 1, pos + 2
            while depth and pos < size:
                if sql.startswith("/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif sql.startswith("*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
            if depth:
                lines = lines or _Lines(sql)
                raise MigrationError("unterminated /* comment starting at line %d" % lines.line(start),
                                     line=lines.line(start))
            tokens.append(Token("comment", start, pos))
            continue
        glued = bool(tokens) and tokens[-1].end == pos and tokens[-1].kind in ("word", "number")
        if ch == "'" or (ch in "eE" and nxt == "'" and not glued):
            escapes = ch != "'"
            pos = pos + 2 if escapes else pos + 1
            while True:
                if pos >= size:
                    lines = lines or _Lines(sql)
                    raise MigrationError("unterminated string starting at line %d" % lines.line(start),
                                         line=lines.line(start))
                if escapes and sql[pos] == "\\":
                    pos += 2
                    continue
                if sql[pos] == "'":
                    if pos + 1 < size and sql[pos + 1] == "'":
                        pos += 2
                        continue
                    pos += 1
                    break
                pos += 1
            tokens.append(Token("string", start, pos))
            continue
        if ch == '"':
            pos += 1
            while True:
                end = sql.find('"', pos)
                if end < 0:
                    lines = lines or _Lines(sql)
                    raise MigrationError("unterminated quoted identifier starting at line %d" % lines.line(start),
                                         line=lines.line(start))
                if sql.startswith('""', end):
                    pos = end + 2
                    continue
                pos = end + 1
                break
            tokens.append(Token("qident", start, pos, sql[start + 1:pos - 1].replace('""', '"')))
            continue
        if ch == "$":
            match = _DOLLAR_RE.match(sql, pos)
            if match and not (tokens and tokens[-1].end == pos and tokens[-1].kind in ("word", "qident", "number")):
                tag = match.group(0)
                end = sql.find(tag, match.end())
                if end < 0:
                    lines = lines or _Lines(sql)
                    raise MigrationError("unterminated dollar-quoted string %s starting at line %d"
                                         % (tag, lines.line(start)), line=lines.line(start))
                pos = end + len(tag)
                tokens.append(Token("string", start, pos))
                continue
            match = _PARAM_RE.match(sql, pos)
            pos = match.end() if match else pos + 1
            tokens.append(Token("param", start, pos))
            continue
        match = _WORD_RE.match(sql, pos)
        if match:
            pos = match.end()
            tokens.append(Token("word", start, pos, match.group(0).upper()))
            continue
        match = _NUM_RE.match(sql, pos)
        if match:
            pos = match.end()
            tokens.append(Token("number", start, pos))
            continue
        if ch == "\\":
            end = sql.find("\n", pos)
            pos = size if end < 0 else end
            tokens.append(Token("meta", start, pos))
            continue
        pos += 1
        tokens.append(Token(ch if ch in "(),.;" else "op", start, pos, ch))
    return tokens


class Statement(object):
    """One statement of a script: its text (without the final semicolon), the line it starts on, and its tokens
    with their parenthesis depth (comments and whitespace left out)."""

    def __init__(self, text, line, tokens):
        self.text = text
        self.line = line
        self.tokens = tokens
        self._keywords = None

    @property
    def keywords(self):
        """Depth-0 tokens as strings: words upper-cased, quoted identifiers as ``"name"``, strings as ``''``."""
        if self._keywords is None:
            self._keywords = [_kw(tok) for tok in self.tokens if tok.depth == 0]
        return self._keywords

    def words(self):
        return [tok.value for tok in self.tokens if tok.kind == "word"]

    def line_of(self, position):
        """Line of a 1-based character position inside the statement (as PostgreSQL reports errors)."""
        if not position or position < 1:
            return self.line
        return self.line + self.text.count("\n", 0, position - 1)

    def summary(self, limit=200):
        flat = mask_sql_secrets(" ".join(self.text.split()))
        return flat if len(flat) <= limit else flat[:limit - 3] + "..."


_PASSWORD_LITERAL_RE = re.compile(r"(\bPASSWORD\s+)(E?'(?:[^']|'')*')", re.IGNORECASE)


def mask_sql_secrets(text):
    """Statement text for messages, with ``PASSWORD '...'`` literals (CREATE/ALTER ROLE, USER MAPPING) hidden."""
    return _PASSWORD_LITERAL_RE.sub(r"\1'<hidden>'", text) if text else text


def _kw(tok):
    if tok.kind == "word":
        return tok.value
    if tok.kind == "qident":
        return '"%s"' % tok.value
    if tok.kind == "string":
        return "''"
    return tok.value if tok.value is not None else tok.kind


def split_statements(sql):
    """Statements of a script, split at semicolons outside quotes, comments, parentheses and ``BEGIN ATOMIC``
    bodies (as psql does). Raises MigrationError for a psql meta-command or an unterminated quote."""
    tokens = lex(sql)
    lines = _Lines(sql)
    out = []
    current, depth, begin_depth, first_words = [], 0, 0, []
    for tok in tokens:
        if tok.kind in ("space", "comment"):
            continue
        if tok.kind == "meta":
            raise MigrationError("line %d: psql meta-command %s is not SQL; migrations must be plain SQL statements"
                                 % (lines.line(tok.start), sql[tok.start:tok.end].split()[0]), line=lines.line(tok.start))
        if tok.kind == ";" and depth == 0 and begin_depth == 0:
            if current:
                out.append(_statement(sql, current, lines))
            current, first_words = [], []
            continue
        if tok.kind == "(":
            depth += 1
            tok.depth = depth - 1
        elif tok.kind == ")":
            depth = max(0, depth - 1)
            tok.depth = depth
        else:
            tok.depth = depth
        if tok.kind == "word":
            if len(first_words) < 4:
                first_words.append(tok.value)
            if tok.value in ("BEGIN", "CASE") and _is_routine(first_words):
                begin_depth += 1
            elif tok.value == "END" and begin_depth:
                begin_depth -= 1
        current.append(tok)
    if current:
        out.append(_statement(sql, current, lines))
    return out


def _is_routine(words):
    # psql's rule: BEGIN/CASE ... END nest only in CREATE [OR REPLACE] FUNCTION|PROCEDURE (SQL-standard bodies).
    if len(words) >= 2 and words[0] == "CREATE" and words[1] in ("FUNCTION", "PROCEDURE"):
        return True
    return len(words) >= 4 and words[:3] == ["CREATE", "OR", "REPLACE"] and words[3] in ("FUNCTION", "PROCEDURE")


def _statement(sql, tokens, lines):
    start, end = tokens[0].start, tokens[-1].end
    return Statement(sql[start:end], lines.line(start), tokens)


# --- directives and files ------------------------------------------------------------------------------------------

def parse_directives(text, filename):
    """The ``-- runbook: ...`` directives at the top of a file (comment and blank lines before the first
    statement). An unknown directive, or one below the first statement, is an error rather than ignored."""
    found = []
    header = True
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        match = DIRECTIVE_RE.match(line)
        if header and (not stripped or stripped.startswith("--")):
            if match:
                for item in re.split(r"[\s,]+", match.group("rest").strip().lower()):
                    if not item:
                        continue
                    if item not in DIRECTIVES:
                        raise MigrationError("%s line %d: unknown directive %r; known directives: %s"
                                             % (filename, lineno, item, ", ".join(DIRECTIVES)), file=filename, line=lineno)
                    if item not in found:
                        found.append(item)
            continue
        header = False
        if match:
            raise MigrationError("%s line %d: a '-- runbook:' directive below the first statement is not read; move it "
                                 "to the comment lines at the top of the file" % (filename, lineno),
                                 file=filename, line=lineno)
    return found


class Script(object):
    """One SQL file: its text, sha256, directives and (parsed on first use) statements."""

    def __init__(self, path):
        self.path = path
        self.filename = os.path.basename(path)
        with open(path, "rb") as handle:
            raw = handle.read()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        try:
            self.text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError("%s is not UTF-8 text (byte %d): save it as UTF-8" % (self.filename, exc.start),
                                 file=self.filename)
        if self.text.startswith("\ufeff"):
            self.text = self.text[1:]
        self.directives = parse_directives(self.text, self.filename)
        self._statements = None

    @property
    def statements(self):
        if self._statements is None:
            try:
                self._statements = split_statements(self.text)
            except MigrationError as exc:
                raise MigrationError("%s: %s" % (self.filename, exc.msg), file=self.filename, **exc.details)
        return self._statements


class Migration(object):
    """A versioned migration: the up script, and the down and verify scripts when they exist."""

    def __init__(self, version, name, key, up_path):
        self.version = version
        self.name = name
        self.key = key
        self.up_path = up_path
        self.down_path = None
        self.verify_path = None
        self._scripts = {}

    def _script(self, which, path):
        if which not in self._scripts:
            self._scripts[which] = Script(path)
        return self._scripts[which]

    @property
    def up(self):
        return self._script("up", self.up_path)

    @property
    def down(self):
        return self._script("down", self.down_path) if self.down_path else None

    @property
    def verify(self):
        return self._script("verify", self.verify_path) if self.verify_path else None

    @property
    def filename(self):
        return os.path.basename(self.up_path)

    @property
    def markers(self):
        return [d for d in self.up.directives if d in MARKERS]


def scan(path):
    """The migrations in a directory, ordered by version. Unknown .sql names, duplicate versions, and down or
    verify scripts without their migration are errors that list every offending file."""
    if not os.path.isdir(path):
        raise MigrationError("path %s is not a directory: point it at the release's migrations, and check the version "
                             "and that the release artifacts were copied there" % path)
    by_key, companions, unknown = {}, [], []
    for filename in sorted(os.listdir(path)):
        full = os.path.join(path, filename)
        if not filename.lower().endswith(".sql") or not os.path.isfile(full):
            continue
        match = FILE_RE.match(filename)
        if not match:
            unknown.append(filename)
            continue
        key = version_key(match.group("version"))
        if match.group("kind"):
            companions.append((key, match, full))
            continue
        by_key.setdefault(key, []).append(Migration("V" + match.group("version"), match.group("name"), key, full))
    problems = []
    if unknown:
        problems.append("file names not understood: %s (name migrations V<version>__<name>.sql, with optional "
                        "V<version>__<name>.down.sql and .verify.sql beside them)" % ", ".join(unknown))
    duplicates = [items for items in by_key.values() if len(items) > 1]
    for items in duplicates:
        problems.append("duplicate version %s: %s (each version must be unique: renumber one of them)"
                        % (items[0].version, ", ".join(m.filename for m in items)))
    for key, match, full in companions:
        owners = by_key.get(key) or []
        owner = owners[0] if len(owners) == 1 else None
        if owner is None or owner.name != match.group("name") or "V" + match.group("version") != owner.version:
            problems.append("%s has no migration %s beside it (a %s script needs the up script of the same version "
                            "and name)" % (os.path.basename(full), "V%s__%s.sql" % (match.group("version"),
                                                                                    match.group("name")),
                                           match.group("kind")))
            continue
        setattr(owner, "%s_path" % match.group("kind"), full)
    if problems:
        raise MigrationError("migrations in %s: %s" % (path, "; ".join(problems)), problems=problems)
    return [items[0] for key, items in sorted(by_key.items())]


# --- statement analysis -----------------------------------------------------------------------------------------------

def _seq(words, *pattern):
    """Whether ``pattern`` occurs in ``words`` as consecutive items; returns the index after it, or -1."""
    size = len(pattern)
    for i in range(len(words) - size + 1):
        if tuple(words[i:i + size]) == pattern:
            return i + size
    return -1


def autocommit_reason(stmt, server_version_num=150000):
    """Why PostgreSQL refuses this statement inside a transaction block, or None."""
    k = stmt.keywords
    if not k:
        return None
    head = k[0]
    if head == "CREATE":
        i = 2 if k[1:2] == ["UNIQUE"] else 1
        if k[i:i + 2] == ["INDEX", "CONCURRENTLY"]:
            return "CREATE INDEX CONCURRENTLY"
        if k[1:2] in (["DATABASE"], ["TABLESPACE"], ["SUBSCRIPTION"]):
            return "CREATE " + k[1]
    if head == "DROP":
        if k[1:3] == ["INDEX", "CONCURRENTLY"]:
            return "DROP INDEX CONCURRENTLY"
        if k[1:2] in (["DATABASE"], ["TABLESPACE"], ["SUBSCRIPTION"]):
            return "DROP " + k[1]
    if head == "REINDEX":
        if "CONCURRENTLY" in stmt.words():
            return "REINDEX CONCURRENTLY"
        if "DATABASE" in k or "SYSTEM" in k:
            return "REINDEX DATABASE/SYSTEM"
    if head == "VACUUM":
        return "VACUUM"
    if head == "CLUSTER" and [w for w in k if w != "VERBOSE"] == ["CLUSTER"]:
        return "CLUSTER without a table"
    if head == "ALTER":
        if k[1:2] == ["SYSTEM"]:
            return "ALTER SYSTEM"
        if k[1:2] == ["DATABASE"] and _seq(k, "SET", "TABLESPACE") > 0:
            return "ALTER DATABASE ... SET TABLESPACE"
        if k[1:2] == ["TYPE"] and _seq(k, "ADD", "VALUE") > 0 and server_version_num < 120000:
            return "ALTER TYPE ... ADD VALUE (before PostgreSQL 12)"
        if k[1:2] == ["TABLE"] and _seq(k, "DETACH", "PARTITION") > 0 and "CONCURRENTLY" in k:
            return "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"
    return None


def transaction_control(stmt):
    """The name of a statement that starts or ends a transaction itself (BEGIN, COMMIT, ...), or None."""
    k = stmt.keywords
    if not k:
        return None
    if k[0] in ("BEGIN", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"):
        return k[0]
    if k[:2] in (["START", "TRANSACTION"], ["PREPARE", "TRANSACTION"]):
        return " ".join(k[:2])
    return None


def _ident_after(tokens, i):
    """The (possibly schema-qualified) name starting at tokens[i]: (name parts as written, index after)."""
    parts = []
    while i < len(tokens) and tokens[i].kind in ("word", "qident"):
        tok = tokens[i]
        parts.append(tok.value.lower() if tok.kind == "word" else tok.value)
        if i + 1 < len(tokens) and tokens[i + 1].kind == "." and i + 2 < len(tokens):
            i += 2
            continue
        i += 1
        break
    return parts, i


def _skip(words, i, *optional):
    while i < len(words) and words[i] in optional:
        i += 1
    return i


def created_table(stmt):
    """Unqualified name of the table a CREATE TABLE statement creates, or None."""
    top = [t for t in stmt.tokens if t.depth == 0]
    k = [_kw(t) for t in top]
    if k[:1] != ["CREATE"]:
        return None
    i = _skip(k, 1, "GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED")
    if k[i:i + 1] != ["TABLE"]:
        return None
    i = i + 1
    if k[i:i + 3] == ["IF", "NOT", "EXISTS"]:
        i += 3
    parts, _i = _ident_after(top, i)
    return parts[-1] if parts else None


def index_target(stmt):
    """For CREATE [UNIQUE] INDEX [CONCURRENTLY] [IF NOT EXISTS] [name] ON [ONLY] table: (index name or None,
    table name as written, unqualified table name, concurrently), or None for another statement."""
    top = [t for t in stmt.tokens if t.depth == 0]
    k = [_kw(t) for t in top]
    if k[:1] != ["CREATE"]:
        return None
    i = 2 if k[1:2] == ["UNIQUE"] else 1
    if k[i:i + 1] != ["INDEX"]:
        return None
    i += 1
    concurrently = k[i:i + 1] == ["CONCURRENTLY"]
    if concurrently:
        i += 1
    if k[i:i + 3] == ["IF", "NOT", "EXISTS"]:
        i += 3
    name = None
    if k[i:i + 1] != ["ON"]:
        parts, i = _ident_after(top, i)
        name = parts[-1] if parts else None
    if k[i:i + 1] != ["ON"]:
        return None
    i = _skip(k, i + 1, "ONLY")
    start = i
    parts, i = _ident_after(top, i)
    if not parts:
        return None
    written = stmt.text[top[start].start - stmt.tokens[0].start:top[i - 1].end - stmt.tokens[0].start]
    return name, written, parts[-1], concurrently


def _alter_table_actions(stmt):
    """The comma-separated actions of ALTER TABLE, each as a list of depth-0 keywords; None for other statements."""
    top = [t for t in stmt.tokens if t.depth == 0]
    k = [_kw(t) for t in top]
    if k[:2] != ["ALTER", "TABLE"]:
        return None
    i = 2
    if k[i:i + 2] == ["IF", "EXISTS"]:
        i += 2
    i = _skip(k, i, "ONLY")
    parts, i = _ident_after(top, i)
    if not parts:
        return None
    if k[i:i + 1] == ["*"]:
        i += 1
    actions, current = [], []
    for word in k[i:]:
        if word == ",":
            actions.append(current)
            current = []
        else:
            current.append(word)
    actions.append(current)
    return [a for a in actions if a]


def _dml_without_where(k):
    """'DELETE' or 'UPDATE' when the statement's main verb is one of them and it has no depth-0 WHERE."""
    verb_index = None
    if k[:1] in (["DELETE"], ["UPDATE"]):
        verb_index = 0
    elif k[:1] == ["WITH"]:
        for i, word in enumerate(k):
            if word in ("SELECT", "INSERT", "MERGE", "VALUES", "TABLE"):
                return None
            if word in ("DELETE", "UPDATE"):
                verb_index = i
                break
    if verb_index is None:
        return None
    return None if "WHERE" in k[verb_index:] else k[verb_index]


def statement_findings(stmt, created_tables=()):
    """Gate rules a statement triggers, as (rule, detail) pairs."""
    k = stmt.keywords
    found = []
    if not k:
        return found
    if k[0] == "DROP":
        for kind in ("TABLE", "SCHEMA", "DATABASE"):
            if k[1:2] == [kind]:
                found.append(("drop_" + kind.lower(), "DROP " + kind))
    if k[0] == "TRUNCATE":
        found.append(("truncate", "TRUNCATE"))
    verb = _dml_without_where(k)
    if verb:
        found.append((verb.lower() + "_without_where", verb + " without WHERE"))
    for action in _alter_table_actions(stmt) or []:
        if action[0] == "DROP" and action[1:2] != ["CONSTRAINT"] and len(action) > 1:
            found.append(("drop_column", "ALTER TABLE ... DROP COLUMN"))
        elif action[0] == "ALTER" and action[1:2] != ["CONSTRAINT"]:
            rest = action[3:] if action[1:2] == ["COLUMN"] else action[2:]
            if rest[:1] == ["TYPE"] or rest[:3] == ["SET", "DATA", "TYPE"]:
                found.append(("alter_column_type", "ALTER COLUMN ... TYPE"))
            elif rest[:3] == ["SET", "NOT", "NULL"]:
                found.append(("set_not_null", "ALTER COLUMN ... SET NOT NULL"))
        elif action[0] == "RENAME":
            if action[1:2] == ["TO"]:
                found.append(("rename_table", "ALTER TABLE ... RENAME TO"))
            elif action[1:2] != ["CONSTRAINT"]:
                found.append(("rename_column", "ALTER TABLE ... RENAME COLUMN"))
    target = index_target(stmt)
    if target and not target[3] and target[2] not in created_tables:
        found.append(("create_index_blocking", "CREATE INDEX on existing table %s without CONCURRENTLY" % target[1]))
    return found


def gate_findings(script, allow_destructive=False, created_tables=None):
    """Every gate finding of a script, with whether and how it is allowed. ``created_tables`` (a set, updated
    here) holds the tables created earlier in the same run: a new table has no rows and no readers yet."""
    created_tables = set() if created_tables is None else created_tables
    findings = []
    for stmt in script.statements:
        for rule, detail in statement_findings(stmt, created_tables):
            if allow_destructive:
                allowed_by = "allow_destructive option"
            elif "allow-destructive" in script.directives:
                allowed_by = "allow-destructive directive"
            elif rule in RULES_ALLOWED_BY_BREAKS_PREVIOUS and "breaks-previous" in script.directives:
                allowed_by = "breaks-previous directive"
            else:
                allowed_by = None
            findings.append({"file": script.filename, "line": stmt.line, "rule": rule, "detail": detail,
                             "why": GATE_RULES[rule], "statement": stmt.summary(), "allowed": allowed_by is not None,
                             "allowed_by": allowed_by})
        table = created_table(stmt)
        if table:
            created_tables.add(table)
    return findings


def transaction_mode(script, server_version_num=150000):
    """('transaction' or 'none', reason) for a script: the no-transaction directive, or the first statement
    PostgreSQL refuses inside a transaction block."""
    if "no-transaction" in script.directives:
        return "none", "no-transaction directive"
    for stmt in script.statements:
        reason = autocommit_reason(stmt, server_version_num)
        if reason:
            return "none", "detected %s at line %d" % (reason, stmt.line)
    return "transaction", "default: one transaction per migration"


# --- history and planning ------------------------------------------------------------------------------------------

def fold_history(rows):
    """The state the history rows (oldest first) describe: {key: last successful up/baseline row} of versions
    applied now, and {key: failure row} of versions whose latest attempt failed."""
    applied, failures = {}, {}
    for row in rows:
        key = version_key(row["version"])
        if not row["success"]:
            failures[key] = row
            continue
        failures.pop(key, None)
        if row["kind"] in ("up", "baseline"):
            applied[key] = row
        else:
            applied.pop(key, None)
    return applied, failures


def resolve_target(target, migrations, applied):
    """The key of ``target``: a version of a file in path or of the history, or 0 (explicitly everything)."""
    if target is None:
        return None
    key = version_key(target)
    if key == (0,):
        return key
    known = set(m.key for m in migrations) | set(applied)
    if key not in known:
        raise MigrationError("target %s is not a migration in path nor in the history (known versions: %s)"
                             % (target, ", ".join(m.version for m in migrations) or "none"))
    return key


def format_version(key, migrations=(), applied=None):
    """The version as files and history spell it (V004) for a key."""
    for m in migrations:
        if m.key == key:
            return m.version
    if applied and key in applied:
        return applied[key]["version"]
    return "V" + ".".join(str(p) for p in key)


class Plan(object):
    """What a run does: ``steps`` of (migration, 'apply'|'revert'), ``baseline`` migrations to record as applied
    without running them, and what was found on the way (drift, missing files, errors that stop the run)."""

    def __init__(self):
        self.direction = "none"
        self.steps = []
        self.baseline = []
        self.drift = []
        self.missing = []
        self.errors = []
        self.entries = []
        self.warnings = []


def check_baseline(baseline_key, migrations, applied):
    """Migrations a baseline records (every version up to it not recorded yet). Baseline adopts a database
    whose history is empty; with a history at or above the baseline it is a no-op, below it an error."""
    if baseline_key is None:
        return []
    if applied:
        if max(applied) >= baseline_key:
            return []
        recorded = format_version(max(applied), migrations, applied)
        raise MigrationError("baseline %s asked for, but the history already records versions up to %s: a baseline "
                             "adopts a database whose history is empty; remove baseline and apply normally"
                             % (format_version(baseline_key, migrations), recorded))
    if migrations and baseline_key > migrations[-1].key:
        raise MigrationError("baseline %s is above the last migration in path (%s)"
                             % (format_version(baseline_key), migrations[-1].version))
    return [m for m in migrations if m.key <= baseline_key]


def make_plan(migrations, applied, failures=None, target=None, baseline=None, out_of_order=False,
              allow_destructive=False, on_drift="fail", server_version_num=150000):
    """The plan of a run. ``applied``/``failures`` come from fold_history(); ``baseline`` is a version key.
    Problems that must stop the run (also in check mode) are collected in ``plan.errors``."""
    failures = failures or {}
    plan = Plan()
    by_key = dict((m.key, m) for m in migrations)
    try:
        plan.baseline = check_baseline(baseline, migrations, applied)
        target_key = resolve_target(target, migrations, applied)
    except MigrationError as exc:
        plan.errors.append(exc.msg)
        return plan
    applied = dict(applied)
    for m in plan.baseline:
        applied[m.key] = {"version": m.version, "name": m.name, "sha256": m.up.sha256, "kind": "baseline"}

    for key in sorted(applied):
        row = applied[key]
        m = by_key.get(key)
        if m is None:
            plan.missing.append(row["version"])
        elif row.get("sha256") and row["sha256"] != m.up.sha256:
            plan.drift.append({"version": m.version, "name": m.name, "file": m.filename,
                               "recorded_sha256": row["sha256"], "file_sha256": m.up.sha256})
    if plan.drift:
        text = ", ".join("%s (recorded %s..., file now %s...)" % (d["file"], d["recorded_sha256"][:12],
                                                                  d["file_sha256"][:12]) for d in plan.drift)
        if on_drift == "fail":
            plan.errors.append("applied migrations were edited after they ran: %s. Restore the files as applied, or "
                               "put the change in a new migration; on_drift=warn continues with a warning" % text)
        else:
            plan.warnings.append("applied migrations were edited after they ran: %s" % text)
    if plan.missing:
        plan.warnings.append("applied versions with no file in path: %s (a path from an older release?)"
                             % ", ".join(plan.missing))

    current = max(applied) if applied else None
    if target_key is not None and current is not None and target_key < current:
        plan.direction = "down"
        for key in sorted((k for k in applied if k > target_key), reverse=True):
            m = by_key.get(key)
            version = applied[key]["version"]
            if m is None:
                plan.errors.append("cannot revert %s: it is applied but its files are not in path" % version)
            elif "irreversible" in m.up.directives:
                plan.errors.append("cannot revert %s: it is marked '-- runbook: irreversible' (restore a backup "
                                   "instead, or pick a target at or above %s)" % (m.filename, m.version))
            elif m.down is None:
                plan.errors.append("cannot revert %s: it has no %s__%s.down.sql" % (m.filename, m.version, m.name))
            else:
                plan.steps.append((m, "revert"))
    else:
        pending = [m for m in migrations if m.key not in applied and (target_key is None or m.key <= target_key)]
        late = [m for m in pending if current is not None and m.key < current]
        if late and not out_of_order:
            plan.errors.append("%s not applied, but later versions are (up to %s): apply them with out_of_order=true "
                               "if they are independent, or renumber them after %s"
                               % (", ".join(m.filename for m in late), format_version(current, migrations, applied),
                                  format_version(current, migrations, applied)))
        plan.steps = [(m, "apply") for m in pending]
        plan.direction = "up" if pending else "none"

    created = set()
    for m, action in plan.steps:
        plan.entries.append(_entry(plan, m, action, allow_destructive, created, server_version_num, failures))
    return plan


def _entry(plan, m, action, allow_destructive, created, server_version_num, failures):
    script = m.up if action == "apply" else m.down
    entry = {"version": m.version, "name": m.name, "file": script.filename, "action": action,
             "markers": m.markers, "verify": m.verify.filename if (m.verify and action == "apply") else None}
    failure = failures.get(m.key)
    if failure:
        entry["last_error"] = failure.get("error")
    try:
        mode, reason = transaction_mode(script, server_version_num)
        entry.update(transaction=mode, transaction_reason=reason, statements=len(script.statements))
        entry["gate"] = gate_findings(script, allow_destructive, created)
        if m.verify and action == "apply":
            entry["verify_statements"] = len(m.verify.statements)  # parsed now: a broken verify stops the plan
    except MigrationError as exc:
        entry.update(transaction=None, transaction_reason=None, statements=None, gate=[])
        plan.errors.append(exc.msg)
        return entry
    if mode == "transaction":
        for stmt in script.statements:
            control = transaction_control(stmt)
            if control:
                plan.errors.append("%s line %d: %s: each migration already runs in its own transaction; remove the "
                                   "transaction control statements, or mark the file '-- runbook: no-transaction' to "
                                   "manage transactions yourself" % (script.filename, stmt.line, control))
                break
    for finding in entry["gate"]:
        if not finding["allowed"]:
            plan.errors.append("%s line %d: refused by rule %s (%s: %s): %s. Review it, then add "
                               "'-- runbook: allow-destructive' at the top of the file or set allow_destructive=true"
                               % (finding["file"], finding["line"], finding["rule"], finding["detail"],
                                  finding["statement"], finding["why"]))
    return entry


def contract_fragment(applied, pending, schema_version, breaks_previous):
    """The run's part of the release data contract (docs/release-data-contract.md, ``migrations``)."""
    return {"migrations": {
        "applied": [{"version": a["version"], "name": a["name"], "duration_ms": a["duration_ms"]} for a in applied],
        "pending": list(pending),
        "schema_version": schema_version,
        "breaks_previous": list(breaks_previous),
    }}
