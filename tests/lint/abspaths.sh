#!/usr/bin/env bash
# No absolute path of one machine in the tree: a file under /work, /home, /root or /Users
# exists on the machine that wrote it, not on a fresh clone (CI runs from one in another folder). Data
# that lives beside the repository (shared/images, shared/research) is named relative to it, or through
# an environment variable. Prints each offending line.
set -u
cd "$(dirname "$0")/../.."
hits=$(git ls-files -z --cached --others --exclude-standard | xargs -0 grep -nIE '(^|[^A-Za-z0-9_.~$/-])/(work|home|root|Users)/[A-Za-z0-9_.-]' 2>/dev/null |
       grep -v '^tests/lint/abspaths.sh:')
if [ -n "$hits" ]; then
  echo "abspaths: absolute paths of a machine (name them relative to the repository or by an environment variable):"
  echo "$hits" | sed 's/^/  /'
  exit 1
fi
echo "abspaths: no absolute paths of a machine"
