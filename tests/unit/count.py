#!/usr/bin/env python3
"""count.py BUILD CAPS [LOGBASE...]: counts the unit test cases of the last `meson test --suite unit` run(s) in
BUILD, from BUILD/meson-logs/LOGBASE.json for each LOGBASE (default: testlog). Every one must exist: a
run that vanished is the counter's failure, never a smaller count.

Prints "PASSED FAILED SKIPPED" on stdout (the only line there); everything else goes to stderr:
  - each failed case with the text of its failure (Catch2 keeps INFO/CAPTURE there: seeds show),
  - each skipped case with its reason (tests/unit/support/skip.h: a "SKIP: reason" line in the case's
    <system-err>). Under CI=true a skip whose reason names a capability in CAPS (what this machine has,
    found by scripts/test's probes) is a failure; so is a skip whose reason names no known capability,
  - each binary that failed without a failing case in its report (crash, timeout, no report): one failure,
  - each TEST_CASE a binary lists (--list-test-names-only) that recorded nothing in its report: one failure
    (a case with no assertion at all proves nothing).
Any error of the counter itself (no testlog.json, a report that does not parse) is an exception: a non-zero
exit that scripts/test turns into a failed run.
count.py --capability REASON prints the capability a skip reason names (scripts/test's integration skips).
"""
import glob, json, os, re, subprocess, sys
import xml.etree.ElementTree as ET


# The capability a skip reason names; the order matters ("needs root (FUSE ...)" is about root).
CAPABILITY_WORDS = [("root", r"\broot\b"), ("fuse", r"/dev/fuse"), ("io_uring", r"io_uring|\buring\b"),
                    ("o_direct", r"O_DIRECT"), ("fio", r"\bfio\b"), ("mount.fuse3", r"mount\.fuse3")]


def capability(reason):
    for cap, rx in CAPABILITY_WORDS:
        if re.search(rx, reason, re.I if cap != "o_direct" else 0):
            return cap
    return None


def err(*a):
    print(*a, file=sys.stderr)


if sys.argv[1] == "--capability":   # count.py --capability REASON: the capability word, or nothing
    print(capability(sys.argv[2]) or "")
    sys.exit(0)
build, caps = sys.argv[1], set(sys.argv[2].split())
ci = os.environ.get("CI") == "true"


logbases = sys.argv[3:] or ["testlog"]
tests = []
for base in logbases:
    lines = [json.loads(line) for line in open(f"{build}/meson-logs/{base}.json")]
    if not lines:
        raise SystemExit(f"count.py: {base}.json lists no unit test")
    tests += lines
passed = failed = skipped = 0
for t in tests:
    name = t["name"].split(" / ")[-1]   # meson writes "project:suite / name" when a test has several suites
    binary = t["command"][0]
    report = f"{build}/junit/{name}.xml"
    bad = 0
    if not os.path.exists(report):
        failed += 1; bad += 1
        err(f"FAILED unit binary {name}: no JUnit report at {report} ({t.get('result')})")
    else:
        root = ET.parse(report).getroot()   # a report that does not parse is the counter's failure
        ran = set()
        listed = subprocess.run([binary, "--list-test-names-only"], capture_output=True, text=True).stdout
        listed = [l.strip() for l in listed.splitlines() if l.strip()]
        if not listed:
            raise SystemExit(f"count.py: {binary} lists no test case")
        for tc in root.iter("testcase"):
            case = tc.get("name")
            # Catch2 writes one <testcase> per leaf SECTION, named "Case/Section/..."
            owner = max((n for n in listed if case == n or case.startswith(n + "/")), key=len, default=case)
            ran.add(owner)
            failures = [f for f in list(tc.iter("failure")) + list(tc.iter("error"))]
            errtext = "".join(e.text or "" for e in tc.iter("system-err"))
            skips = [l[6:] for l in errtext.splitlines() if l.startswith("SKIP: ")]
            if failures:
                failed += 1; bad += 1
                err(f"FAILED unit {name}: {case}")
                for f in failures:
                    text = ((f.get("message") or "") + "\n" + (f.text or "")).strip().splitlines()
                    for l in text[:25]:
                        err(f"    {l}")
            elif skips:
                cap = capability(skips[0])
                if ci and (cap is None or cap in caps):
                    failed += 1; bad += 1
                    why = "no known capability named" if cap is None else f"this machine has {cap}"
                    err(f"FAILED unit {name}: {case}: skipped under CI=true but {why}: {skips[0]}")
                else:
                    skipped += 1
                    err(f"SKIPPED unit {name}: {case}: {'; '.join(skips)}")
            else:
                passed += 1
        for n in listed:
            if n not in ran:
                failed += 1; bad += 1
                err(f"FAILED unit {name}: {n}: recorded nothing (no assertion ran)")
    if t.get("result") not in ("OK", "EXPECTEDFAIL") and not bad:
        failed += 1
        err(f"FAILED unit binary {name}: {t.get('result')} without a failing case in its report "
            f"(crash, timeout or no report: see {build}/meson-logs/{'/'.join(b + '.txt' for b in logbases)})")
print(passed, failed, skipped)
