"""int8 quantization: the arithmetic (qmath), calibration (calibrate) and calibration data (data).

    from edgec.quant import CalibrationOptions, calibrate, load_calibration
    feeds = load_calibration("calib.npz", graph)
    ranges = calibrate(graph, feeds, CalibrationOptions(method="entropy"))   # {value: (rmin, rmax)}
    scale, zp = compute_scale_zp(*ranges["x"], 0, 255)

docs/quantization.md describes the scheme (int8 per-channel weights, per-tensor activations,
int32 bias, integer-only requantization with its exact rounding) and the calibration methods.
"""
from .calibrate import (CalibrationError, CalibrationOptions, Calibrator, EntropyCalibrator, MinMaxCalibrator,
                        PercentileCalibrator, StreamingHistogram, calibrate, calibration_values, create_calibrator,
                        entropy_threshold)
from .data import (CalibrationCountError, CalibrationDataError, CalibrationDtypeError, CalibrationFeeds,
                   CalibrationNameError, CalibrationShapeError, EmptyCalibrationDataError, input_infos,
                   load_calibration, random_calibration)
from .qmath import (QuantizationError, compute_scale_zp, dequantize, multiplier_value, qrange, quantize, quantize_bias,
                    quantize_multiplier, quantize_weights_per_channel, requantize)

__all__ = [
    "CalibrationError", "CalibrationOptions", "Calibrator", "EntropyCalibrator", "MinMaxCalibrator",
    "PercentileCalibrator", "StreamingHistogram", "calibrate", "calibration_values", "create_calibrator",
    "entropy_threshold",
    "CalibrationCountError", "CalibrationDataError", "CalibrationDtypeError", "CalibrationFeeds",
    "CalibrationNameError", "CalibrationShapeError", "EmptyCalibrationDataError", "input_infos",
    "load_calibration", "random_calibration",
    "QuantizationError", "compute_scale_zp", "dequantize", "multiplier_value", "qrange", "quantize",
    "quantize_bias", "quantize_multiplier", "quantize_weights_per_channel", "requantize",
]
