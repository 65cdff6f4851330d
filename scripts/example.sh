#!/usr/bin/env bash
# The main job: set up edgec, then compile the bundled SMS spam classifier and run it
# from Python, from the edgec command line, and from the plain C example program.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh
bash scripts/setup.sh
source scripts/_python.sh   # setup may have made .venv

OUT=build/example
mkdir -p "$OUT"
echo; echo "== 1. Python API (examples/sms_spam/run_example.py)"
$PY examples/sms_spam/run_example.py --out "$OUT/sms_spam"

echo; echo "== 2. command line"
$PY - "$OUT/features.npy" <<'PYEOF'
import sys
sys.path.insert(0, "tools")
import numpy as np
from make_example_model import featurize
np.save(sys.argv[1], featurize("URGENT! You have won a 1 week FREE membership in our prize draw. Txt WIN to 81010")[None, :])
PYEOF
$PY -m edgec compile tests/data/models/sms_spam_mlp.onnx --input-shape features=1,1024 -o "$OUT/cli"
$PY -m edgec run "$OUT/cli" --input features="$OUT/features.npy" -o "$OUT/results"
$PY -m edgec verify "$OUT/cli" tests/data/models/sms_spam_mlp.onnx
$PY -m edgec inspect "$OUT/cli" | tail -3

echo; echo "== 3. C example program (runtime_c/examples/run_model.c)"
build/run_model "$OUT/cli" "$OUT/features.npy" -o "$OUT/results_c"
$PY -c "import numpy as np, sys; a=np.load('$OUT/results/probs.npy'); b=np.load('$OUT/results_c/probs.npy'); print('C and Python outputs identical:', bool((a==b).all())); sys.exit(0 if (a==b).all() else 1)"
