"""tinyformer-train: from a labelled text file to a classifier that fits a microcontroller.

Modules that need only numpy / scikit-learn / tokenizers / safetensors (data, baseline,
vocab, checkpoint, budget, tfm, report) are imported eagerly; `distill` (teacher,
augmentation, student) needs PyTorch and transformers and is imported only by the
phases that train.
"""


class TrainError(Exception):
    """A problem with the user's input or budget: printed as one line, exit status 2."""
