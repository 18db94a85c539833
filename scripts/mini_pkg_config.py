#!/usr/bin/env python3
"""A small stand-in for pkg-config, for a GPU machine that lacks it (scripts/gpu-check.sh).

It answers what Meson and tests/install_test.sh ask (--version, --modversion, --cflags,
--libs, --exists, --variable, --define-variable) from the .pc files in PKG_CONFIG_PATH,
expanding ${variables} and following Requires (and Requires.private, for --cflags, as
pkg-config does). Version constraints in Requires are not checked.
"""
import os
import re
import sys


def find_pc(name):
    for folder in os.environ.get("PKG_CONFIG_PATH", "").split(os.pathsep):
        path = os.path.join(folder, name + ".pc")
        if folder and os.path.isfile(path):
            return path
    return None


def read_pc(path, overrides):
    variables = {"pcfiledir": os.path.dirname(os.path.abspath(path))}
    fields = {}
    expand = lambda text: re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), ""), text)
    with open(path) as pc:
        for line in pc:
            line = line.split("#", 1)[0].strip()
            if match := re.match(r"^(\w+)\s*=\s*(.*)$", line):
                name = match.group(1)
                variables[name] = overrides.get(name, expand(match.group(2)))
            elif match := re.match(r"^([\w.]+)\s*:\s*(.*)$", line):
                fields[match.group(1).lower()] = expand(match.group(2))
    return variables, fields


def required(fields, key):
    """The package names of a Requires field, without version constraints."""
    names = re.sub(r"[<>=!]+\s*\S+", " ", fields.get(key, "")).replace(",", " ").split()
    return names


def flags(name, field, overrides, seen):
    """`field` (cflags or libs) of `name` and of what it requires, or None if a package is missing."""
    if name in seen:
        return []
    seen.add(name)
    path = find_pc(name)
    if path is None:
        print(f"Package {name} was not found in the pkg-config search path", file=sys.stderr)
        return None
    variables, fields = read_pc(path, overrides)
    result = [fields.get(field, "")]
    keys = ["requires", "requires.private"] if field == "cflags" else ["requires"]
    for key in keys:
        for dependency in required(fields, key):
            more = flags(dependency, field, overrides, seen)
            if more is None:
                return None
            result += more
    return result


def main(args):
    if "--version" in args:
        print("0.29.2")
        return 0
    names = [a for a in args if not a.startswith("-")]
    options = [a for a in args if a.startswith("-")]
    overrides = dict(o.split("=", 2)[1:] for o in options if o.startswith("--define-variable=") and o.count("=") == 2)
    answers = []
    for name in names:
        path = find_pc(name)
        if path is None:
            if "--exists" not in options or "--print-errors" in options:
                print(f"Package {name} was not found in the pkg-config search path", file=sys.stderr)
            return 1
        variables, fields = read_pc(path, overrides)
        for option in options:
            if option == "--modversion":
                answers.append(fields.get("version", ""))
            elif option in ("--cflags", "--libs"):
                more = flags(name, option[2:], overrides, set())
                if more is None:
                    return 1
                answers += more
            elif option.startswith("--variable="):
                answers.append(variables.get(option.split("=", 1)[1], ""))
    print(" ".join(a for a in answers if a))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
