"""What the networks share: activations by name, and a clear refusal of an input a network shrinks to nothing."""

import itertools

import torch
from torch import nn
from torch.func import functional_call

from user_errors import UserError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def check_input_fits(net: nn.Module, input_shape: tuple[int, ...], small_input_stem: bool) -> None:
    """One sentence, not a traceback at the first step, when `net` shrinks an input of `input_shape` to nothing;
    run on the meta device (shapes only, free even for VGG-16), in eval mode, leaving `net` as it was."""
    tensors = {name: tensor.to("meta") for name, tensor in itertools.chain(net.named_parameters(), net.named_buffers())}
    was_training = net.training
    try:
        with torch.no_grad():
            functional_call(net.eval(), tensors, (torch.zeros(1, *input_shape, device="meta"),))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        fix = "use larger images or another model"
        if not small_input_stem:
            fix = "set model.small_input_stem=true (a 3x3 stride-1 first convolution, for small images)"
        shape = "x".join(map(str, input_shape))
        raise UserError(f"{type(net).__name__} cannot process a {shape} input ({reason}): {fix}.") from error
    finally:
        net.train(was_training)
