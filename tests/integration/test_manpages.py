"""The manual pages: every page renders with man(1) without a warning,
and each one says what the program says of itself.

- castorctl(8) holds, word for word, the synopsis `castorctl help COMMAND`
  prints for every command (one text in C, repeated in the page and
  checked here, so the two cannot drift);
- castor.conf(5) is generated from src/lib/conf_keys.c
  (scripts/gen-conf-man.py) and names every key;
- services.conf(5) names every key the parser accepts;
- each program's own usage line is in its page.
"""
import os
import re
import subprocess
import sys

import pytest

from conftest import BUILD, TOP, binpath

PAGES = ["castord.8", "castorctl.8", "sync-client.8", "syncd.8", "imapd.8", "lmtpd.8",
         "pop3d.8", "castor.conf.5", "services.conf.5"]


def render(page):
    """The page as man(1) prints it, in ASCII, one long line per paragraph."""
    env = dict(os.environ, MANWIDTH="250", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    cp = subprocess.run(["man", "--warnings", "-E", "ascii", "-l", str(BUILD / "man" / page)],
                        capture_output=True, text=True, env=env, timeout=60)
    assert cp.returncode == 0, f"man -l {page}: {cp.stderr}"
    assert cp.stderr.strip() == "", f"man -l {page} warned: {cp.stderr}"
    return cp.stdout


def norm(text):
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page):
    out = render(page)
    name = page.rsplit(".", 1)[0]
    assert "NAME" in out and "SYNOPSIS" in out and "SEE ALSO" in out
    assert re.search(rf"^\s*{re.escape(name)} - \S", out, re.M), f"{page}: no NAME line"


def ctl_commands():
    src = (TOP / "src" / "ctl" / "ctl_main.c").read_text()
    names = re.findall(r'\{ "([a-z-]+)", ctl_cmd_[a-z_]+ \}', src)
    assert len(names) >= 15, names
    return names


def synopses(usage):
    """The command lines of a usage text: 'castorctl ...' plus its
    continuation lines (indented, starting with [ or --); prose skipped."""
    out = []
    for line in usage.splitlines():
        s = line.strip()
        if s.startswith("usage: "):
            s = s[len("usage: "):]
        if s.startswith("castorctl "):
            out.append(s)
        elif out and line[:1].isspace() and (s.startswith("[") or s.startswith("--")) \
                and not re.match(r"--[a-z-]+ (lets|runs)", s):
            out[-1] += " " + s
    return [norm(x) for x in out]


def test_castorctl_help_matches_page():
    page = norm(render("castorctl.8"))
    ctl = binpath("castorctl")
    seen = 0
    for cmd in ctl_commands():
        cp = subprocess.run([ctl, "help", cmd], capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, f"castorctl help {cmd}: {cp.returncode} {cp.stderr}"
        lines = synopses(cp.stdout)
        assert lines, f"castorctl help {cmd} printed no synopsis: {cp.stdout!r}"
        for s in lines:
            assert s in page, f"castorctl(8) lacks the synopsis of {cmd}: {s!r}"
            seen += 1
    assert seen >= 20
    cp = subprocess.run([ctl, "help", "nosuch"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 2 and "unknown command" in cp.stderr


def test_castor_conf_page_is_generated_and_complete():
    cp = subprocess.run([sys.executable, str(TOP / "scripts" / "gen-conf-man.py"), "--check"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    page = render("castor.conf.5")
    keys = re.findall(r'^\s*\{ "([^"]+)", CONF_', (TOP / "src" / "lib" / "conf_keys.c").read_text(),
                      re.M)
    assert len(keys) >= 40
    for k in keys:
        shown = "CHAN_" + k[2:] if k.startswith("*_") else k
        assert re.search(rf"^\s*{re.escape(shown)}: ", page, re.M), f"castor.conf(5) lacks {k}"


def test_services_conf_page_names_every_key():
    src = (TOP / "src" / "lib" / "servicesconf.c").read_text()
    m = re.search(r'\{\s*("cmd",[^}]*)\}', src)
    assert m, "key name table not found in servicesconf.c"
    keys = re.findall(r'"([a-z_]+)"', m.group(1))
    assert "listen" in keys and "timeout" in keys
    page = render("services.conf.5")
    for k in keys:
        assert re.search(rf"^\s*{k}=", page, re.M), f"services.conf(5) lacks {k}="


@pytest.mark.parametrize("prog,page", [("castord", "castord.8"), ("imapd", "imapd.8"),
                                       ("pop3d", "pop3d.8"), ("lmtpd", "lmtpd.8"),
                                       ("syncd", "syncd.8"), ("sync-client", "sync-client.8")])
def test_program_usage_in_its_page(prog, page):
    cp = subprocess.run([binpath(prog), "-h"], capture_output=True, text=True, timeout=30)
    usage = cp.stdout + cp.stderr
    forms = re.findall(rf"^(?:usage: |\s+)({re.escape(prog)} [^\n]*?)(?:\s{{2,}}\S.*)?$", usage, re.M)
    assert forms, f"{prog} -h printed no usage: {usage!r}"
    text = norm(render(page))
    for f in forms:
        assert norm(f) in text, f"{page} lacks {prog}'s synopsis {f!r}"
