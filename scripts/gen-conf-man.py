#!/usr/bin/env python3
"""Write man/castor.conf.5.scd's list of settings from src/lib/conf_keys.c.

The table in conf_keys.c is the one source of the keys castor.conf knows
(conf.c checks values against it); the man page's SETTINGS section is
generated from it so the two cannot drift.  With --check, exit 1 (and say
so) when the committed page differs from what would be written.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
KEYS = os.path.join(TOP, "src", "lib", "conf_keys.c")
HEAD = os.path.join(TOP, "man", "castor.conf.5.head.scd")
TAIL = os.path.join(TOP, "man", "castor.conf.5.tail.scd")
OUT = os.path.join(TOP, "man", "castor.conf.5.scd")

TYPES = {"CONF_STRING": "string", "CONF_INT": "integer", "CONF_BOOL": "yes|no",
         "CONF_DURATION": "duration", "CONF_BYTES": "size", "CONF_PATH": "path",
         "CONF_ENUM": None, "CONF_LIST": "list of words", "CONF_FLOAT": "number"}
ROW = re.compile(r'^\s*\{\s*"([^"]+)",\s*(CONF_[A-Z]+),\s*(NULL|"[^"]*"),\s*"((?:[^"\\]|\\.)*)"\s*\},')
GROUP = re.compile(r'^\s*/\*\s*(.+?)\s*\*/\s*$')


def scd_escape(s):
    # scdoc: * and _ start emphasis; a backslash escapes them
    return s.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def settings():
    out, in_table = [], False
    for line in open(KEYS, encoding="utf-8"):
        if "conf_known_keys[]" in line:
            in_table = True
            continue
        if not in_table:
            continue
        g = GROUP.match(line)
        if g:
            out.append(f"## {g.group(1).capitalize()}\n")
            continue
        m = ROW.match(line)
        if not m:
            continue
        name, typ, choices, help_ = m.groups()
        kind = choices.strip('"') if typ == "CONF_ENUM" else TYPES[typ]
        shown = name.replace("*_", "CHAN_", 1) if name.startswith("*_") else name
        out.append(f"*{scd_escape(shown)}*: _{scd_escape(kind)}_\n\t{scd_escape(help_)}\n")
    return "\n".join(out)


def page():
    return (open(HEAD, encoding="utf-8").read() + "\n# SETTINGS\n\n" + settings() + "\n"
            + open(TAIL, encoding="utf-8").read())


def main():
    text = page()
    if "--check" in sys.argv[1:]:
        cur = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else ""
        if cur != text:
            print(f"{OUT} is out of date: run scripts/gen-conf-man.py", file=sys.stderr)
            return 1
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
