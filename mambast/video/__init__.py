"""Video stylization (`mambast video`; optional extra `mambast[video]`: PyAV and OpenCV).

io.py         decode/encode with PyAV (frame times, display orientation, audio copied in sync), frame folders
stabilise.py  --stability: blend each output with the previous output warped by the flow
              (mambast/flow.py: DIS optical flow, warping, occlusion and motion-boundary masks)
stylize.py    the engine on a frame sequence: style encoded once, one shuffle seed, batched frames
pipeline.py   the stages (decode, model, flow blend, encode) overlapped in threads
"""

from .io import VideoError, VideoInfo, VideoReader, VideoWriter, parse_rate
from .stylize import DEFAULT_SEED, DEFAULT_STABILITY, VideoReport, stylize_frames, stylize_video

__all__ = ["DEFAULT_SEED", "DEFAULT_STABILITY", "VideoError", "VideoInfo", "VideoReader", "VideoReport",
           "VideoWriter", "parse_rate", "stylize_frames", "stylize_video"]
