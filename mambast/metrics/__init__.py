"""Evaluation metrics of the style-transfer literature and the paper's protocol runner.

fid_from_features(a, b)          Frechet distance of Gaussian fits (stable when n < d)
fid_infinity(a, b)               FID_inf (Chong & Forsyth), an extra
artfid(fid, lpips)               (1 + LPIPS) * (1 + FID)
LPIPSAlex / load_lpips           LPIPS-AlexNet v0.1 (mambast.nets.lpips_net)
cfsd(vgg, content, stylized)     VGG-19 relu3_1 self-similarity KL summed over rows (StyleID), chunked
content_loss / style_loss        the paper's VGG losses (mambast.losses)
evaluate / run_protocol          score a stylized folder / stylize then score; report.json, report.md, PNG
EvalOptions / StylizeOptions     how to score / stylize, checked once (FieldError naming the field)
score(pairing, networks, opts)   the metrics of paired images -> Report (writes nothing); write_report writes it
"""

from .artfid import artfid
from .cfsd import cfsd, cfsd_from_features
from .fid import fid_from_features, fid_infinity, frechet_distance, gaussian_stats, inception_features
from .losses import content_loss, mean_std, style_loss
from .networks import EvalWeights, Networks, load_networks
from .options import EvalOptions, StylizeOptions
from .pairing import Pair, pair_by_name
from .preprocess import MODES
from .protocol import evaluate, pair_folders, run_protocol
from .report import write_report
from .score import Report, score
from .warping import warping_error as warping_error  # video temporal consistency (mambast.video)

__all__ = [
    "MODES", "EvalOptions", "EvalWeights", "Networks", "Pair", "Report", "StylizeOptions", "artfid", "cfsd",
    "cfsd_from_features", "content_loss", "evaluate", "fid_from_features", "fid_infinity", "frechet_distance",
    "gaussian_stats", "inception_features", "load_networks", "mean_std", "pair_by_name", "pair_folders",
    "run_protocol", "score", "style_loss", "write_report",
]  # fmt: skip
