# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""An inference-only forward of transformers' T5 stacks for scoring: the same weights and the same arithmetic as
`T5Stack.forward` (fp32 results equal to rounding), minus the per-layer overheads that dominate on CPU.

What transformers' T5 does per layer and this does once per batch or not at all:

- With SDPA, every self-attention layer combines the `(1, heads, L, L)` relative position bias and the
  `(batch, 1, L, L)` padding mask into a fresh contiguous `(batch, heads, L, L)` tensor (`torch.where` + copy); here
  the combined mask is built once per stack call and shared by all layers (it is the same in every layer).
- Cross-attention adds a `(1, heads, T, L)` zero position bias to its mask; here the boolean key mask goes to SDPA.
- RMSNorm squares the whole activation (`pow`) before reducing; here one `vector_norm` reduction does it.
- The gated GELU's tanh approximation (`gelu_new`) runs as 7 pointwise kernels; here as PyTorch's fused
  `gelu(approximate="tanh")`, the same formula.
- Residual additions and the gate product are done in place on tensors this code owns.

Every linear layer is still called as a module (so quantised or hooked linears keep working); only the layer-norm
weights and the relative-attention embedding are read directly. Use `fused_t5_unsupported_reason` to check a model
first: the transformers path is the reference, and stays in use where this one does not apply.
"""

import torch
from torch import nn
from torch.nn import functional


def fused_t5_unsupported_reason(model: nn.Module, assume_eval_mode: bool = False) -> str | None:
    """Why `encode`/`decode` cannot run `model`'s T5 (a CLIPFlanT5 model or its T5), or None if they can
    (`assume_eval_mode`: the caller switches the model to eval mode before running it)."""
    language_model = getattr(getattr(model, "model", model), "language_model", model)
    encoder, decoder = getattr(language_model, "encoder", None), getattr(language_model, "decoder", None)
    if encoder is None or decoder is None or not hasattr(encoder, "block"):
        return "the language model is not a T5 encoder-decoder"
    # The stacks hold their own config copies: theirs is what T5's attention layers read.
    implementations = {encoder.config._attn_implementation, decoder.config._attn_implementation}
    if implementations != {"sdpa"}:
        return f"the T5 attention implementation is {'/'.join(sorted(implementations))} (the fused path is SDPA)"
    if language_model.training and not assume_eval_mode:
        return "the model is in training mode"
    if language_model.dtype == torch.float16:
        return "the model is in float16 (transformers' T5 clamps infinities in float16; this path does not)"
    modules = list(language_model.modules())
    if any(hasattr(module, "_hf_hook") for module in modules):
        return "the model is dispatched with accelerate hooks (device_map / offloading)"
    if len({param.device for param in language_model.parameters()}) != 1:
        return "the T5 parameters are on several devices"
    return None


def _rms_norm(norm: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """T5LayerNorm: fp32 statistics, cast back to the weight's dtype before scaling (as transformers does)."""
    squares = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True, dtype=torch.float32).square_()
    scale = torch.rsqrt(squares.div_(hidden.shape[-1]).add_(norm.variance_epsilon))
    if hidden.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return torch.mul(hidden, scale).mul_(norm.weight)
    normed = hidden * scale
    if norm.weight.dtype in (torch.float16, torch.bfloat16):
        normed = normed.to(norm.weight.dtype)
    return norm.weight * normed


def _activation(dense: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    # transformers' NewGELUActivation ("gelu_new", FlanT5's) is the tanh approximation written as 7 kernels.
    if type(dense.act).__name__ == "NewGELUActivation":
        return functional.gelu(hidden, approximate="tanh")
    return dense.act(hidden)


def _feed_forward(layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """T5LayerFF (gated or not), added in place to `hidden`."""
    dense = layer.DenseReluDense
    normed = _rms_norm(layer.layer_norm, hidden)
    if hasattr(dense, "wi_0"):
        inner = _activation(dense, dense.wi_0(normed)).mul_(dense.wi_1(normed))
    else:
        inner = _activation(dense, dense.wi(normed))
    if inner.dtype != dense.wo.weight.dtype and dense.wo.weight.dtype != torch.int8:
        inner = inner.to(dense.wo.weight.dtype)
    return hidden.add_(dense.wo(inner))


def _heads(linear: nn.Module, hidden: torch.Tensor, head_dim: int) -> torch.Tensor:
    batch, length = hidden.shape[:2]
    return linear(hidden).view(batch, length, -1, head_dim).transpose(1, 2)


def _attention(
    attention: nn.Module,
    hidden: torch.Tensor,
    mask: torch.Tensor,
    keys: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """T5Attention (no scaling of q.k); `mask` is additive (bias included) or boolean. Self-attention when `keys` is
    None."""
    head_dim = attention.key_value_proj_dim
    query = _heads(attention.q, hidden, head_dim)
    if keys is None:
        keys, values = _heads(attention.k, hidden, head_dim), _heads(attention.v, hidden, head_dim)
    output = functional.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=1.0)
    return attention.o(output.transpose(1, 2).reshape(*hidden.shape[:2], -1))


def _bias_mask(attention: nn.Module, allowed: torch.Tensor, query_length: int, key_length: int) -> torch.Tensor:
    """The relative position bias where `allowed` (broadcastable boolean, `(batch, 1, query, key)`), the dtype's
    minimum elsewhere (what transformers' SDPA path computes in every layer), contiguous (SDPA would copy it)."""
    bias = attention.compute_bias(query_length, key_length)
    # compute_bias returns a permuted view; `where` would give its output that layout, which SDPA then copies.
    bias = bias.to(attention.o.weight.dtype).contiguous()
    return torch.where(allowed, bias, torch.finfo(bias.dtype).min).contiguous()


def encode(encoder: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`encoder(inputs_embeds=..., attention_mask=...).last_hidden_state` of a T5 encoder stack, in eval mode.
    `attention_mask` is `(batch, length)`, 1 on tokens and 0 on padding."""
    length = inputs_embeds.shape[1]
    blocks = encoder.block
    keys_allowed = attention_mask.bool()[:, None, None, :]
    mask = _bias_mask(blocks[0].layer[0].SelfAttention, keys_allowed, length, length)
    hidden = inputs_embeds.clone()  # added to in place below
    for block in blocks:
        self_attention = block.layer[0]
        hidden.add_(_attention(self_attention.SelfAttention, _rms_norm(self_attention.layer_norm, hidden), mask))
        hidden = _feed_forward(block.layer[-1], hidden)
    return _rms_norm(encoder.final_layer_norm, hidden)


def decode(
    decoder: nn.Module,
    decoder_input_ids: torch.Tensor,
    decoder_attention_mask: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    encoder_attention_mask: torch.Tensor,
) -> torch.Tensor:
    """`decoder(...).last_hidden_state` of a T5 decoder stack without a cache (teacher forcing), in eval mode."""
    length = decoder_input_ids.shape[1]
    blocks = decoder.block
    causal = torch.ones(length, length, dtype=torch.bool, device=decoder_input_ids.device).tril_()
    allowed = causal[None, None] & decoder_attention_mask.bool()[:, None, None, :]
    self_mask = _bias_mask(blocks[0].layer[0].SelfAttention, allowed, length, length)
    cross_mask = encoder_attention_mask.bool()[:, None, None, :]
    hidden = decoder.embed_tokens(decoder_input_ids)
    for block in blocks:
        self_attention, cross_attention = block.layer[0], block.layer[1]
        hidden = hidden + _attention(
            self_attention.SelfAttention, _rms_norm(self_attention.layer_norm, hidden), self_mask
        )
        attention = cross_attention.EncDecAttention
        head_dim = attention.key_value_proj_dim
        keys = _heads(attention.k, encoder_hidden_states, head_dim)
        values = _heads(attention.v, encoder_hidden_states, head_dim)
        normed = _rms_norm(cross_attention.layer_norm, hidden)
        hidden.add_(_attention(attention, normed, cross_mask, keys, values))
        hidden = _feed_forward(block.layer[-1], hidden)
    return _rms_norm(decoder.final_layer_norm, hidden)
