"""The elastic MobileNetV3 supernet: dynamic ops, the network, extraction, checkpoints, BN calibration."""

from nat.supernet.calibration import BNCalibrator, kept_bn_statistics, recalibrate_bn
from nat.supernet.checkpoint import load_ofa_state_dict, load_supernet, save_supernet
from nat.supernet.network import Supernet
from nat.supernet.static import StaticMobileNetV3

__all__ = [
    "kept_bn_statistics",
    "BNCalibrator",
    "StaticMobileNetV3",
    "Supernet",
    "load_ofa_state_dict",
    "load_supernet",
    "recalibrate_bn",
    "save_supernet",
]
