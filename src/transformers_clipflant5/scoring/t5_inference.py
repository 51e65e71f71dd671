# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""An inference-only forward of transformers' T5 stacks for scoring: the same weights and the same arithmetic as
`T5Stack.forward` (fp32 results equal to rounding), minus the per-layer overheads that dominate on CPU.

What transformers' T5 does per layer and this does once per batch or not at all:

- With SDPA, every self-attention layer combines the `(1, heads, L, L)` relative position bias and the
  `(batch, 1, L, L)` padding mask into a fresh contiguous `(batch, heads, L, L)` tensor (`torch.where` + copy: for
  XXL's 64 heads and 700-token prompts, 1 GB in bf16 at batch 16). Here the encoder's self-attention runs once per
  run of rows with the same number of tokens (VQAScore's batches are sorted by length), on those tokens only, with
  the `(1, heads, l, l)` bias shared across the run's rows: no padding mask, no attention over padding. Where rows
  are not right-padded (or under `torch.compile`, which would recompile for every new set of lengths), the combined
  mask is built once per stack call and shared by all layers instead.
- Cross-attention adds a `(1, heads, T, L)` zero position bias to its mask; here the boolean key mask goes to SDPA.
- RMSNorm squares the whole activation (`pow`) before reducing; here one `vector_norm` reduction does it.
- The gated GELU's tanh approximation (`gelu_new`) runs as 7 pointwise kernels; here as PyTorch's fused
  `gelu(approximate="tanh")`, the same formula.
- Residual additions and the gate product are done in place on tensors this code owns.
- On CPU, the feed-forward and the next layer's RMSNorm and query/key/value projections run a cache-sized block of
  rows at a time (`_row_blocks`): the pointwise kernels between the matmuls then read and write the core's cache
  instead of memory.
- The decoder's cross-attention for a few answer tokens skips projecting the whole encoder output to keys and values
  in every layer (`_cross_attention_folded`): the same products, associated the other way round.

Linear layers are called as modules (so torchao-, bitsandbytes-quantized or hooked linears keep working), except the
cross-attention's q/k/v weights, read directly when they are plain `nn.Linear`s; the layer-norm weights and the
relative-attention embedding are read directly too. Masks and biases take the activations' dtype (bitsandbytes
stores its weights as integers). Use `fused_t5_unsupported_reason` to check a model first: the transformers path is
the reference, and stays in use where this one does not apply.
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


def _rms_norm(norm: nn.Module, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """T5LayerNorm: fp32 statistics, cast back to the weight's dtype before scaling (as transformers does); into
    `out` when given."""
    if hidden.is_cuda and hidden.dtype == norm.weight.dtype:
        return _rms_norm_kernel(norm, hidden, out)
    statistics_dtype = torch.promote_types(hidden.dtype, torch.float32)  # fp32 at least; fp64 stays fp64
    squares = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True, dtype=statistics_dtype).square_()
    scale = torch.rsqrt(squares.div_(hidden.shape[-1]).add_(norm.variance_epsilon))
    if out is None and norm.weight.dtype in (torch.float16, torch.bfloat16):
        # The product is computed in fp32 (type promotion) and rounded to the weight's dtype as it is stored: what
        # transformers' `(hidden * scale).to(dtype)` does in two kernels and an fp32 intermediate, in one.
        out = torch.empty_like(hidden, dtype=norm.weight.dtype)
    return torch.mul(hidden, scale, out=out).mul_(norm.weight)


def _rms_norm_kernel(norm: nn.Module, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """T5LayerNorm through `rms_norm`, one fused kernel on CUDA (6x faster than the kernels above at XXL's shapes, in
    bf16 on an H200; on CPU it is composed of slower ones). It computes the statistics and the product in fp32 and
    rounds once to the input's dtype: without a weight that is transformers' `(hidden * scale).to(weight dtype)` for
    an input in the weight's dtype; the weight is applied after that rounding, as transformers does (with the weight
    inside, a quarter of bf16 outputs would differ by one unit in the last place)."""
    normed = functional.rms_norm(hidden, hidden.shape[-1:], None, norm.variance_epsilon)
    return normed.mul_(norm.weight) if out is None else torch.mul(normed, norm.weight, out=out)


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


# On CPU, the feed-forward's intermediates of a whole batch (rows x d_ff) are tens of MB: every pointwise kernel
# between the matmuls (RMSNorm, GELU, gate, residual) then streams them from memory, and the q/k/v projections read
# their input three times. A block of rows keeps them in the core's cache; the matmuls keep their speed down to a few
# hundred rows. Measured on 1 core (2 MB L2) at bench_score.py's t5-heavy shape: its feed-forward 1.6x faster with
# 256-1024 rows than on a batch's 6,912, bit for bit the same outputs; 4 MB and 1 MB blocks within noise end to end.
CPU_CHUNK_BYTES = 4 * 2**20
CPU_MIN_CHUNK_ROWS = 256


def _row_blocks(hidden: torch.Tensor, feed_forward: nn.Module) -> list[slice]:
    """The blocks of rows (tokens) of `hidden` that the layer's row-wise part takes at a time: all rows at once off
    CPU (one kernel each is fastest there) and when compiled (the pointwise chain is fused; a loop over the rows
    would make dynamo recompile for every new number of rows); on CPU enough rows to fill `CPU_CHUNK_BYTES` with one
    d_ff-wide intermediate, at least `CPU_MIN_CHUNK_ROWS`."""
    if hidden.device.type != "cpu" or torch.compiler.is_compiling():
        return [slice(None)]
    dense = feed_forward.DenseReluDense
    inner = getattr(dense, "wi_0", getattr(dense, "wi", None)).out_features
    rows = max(CPU_MIN_CHUNK_ROWS, CPU_CHUNK_BYTES // (inner * hidden.element_size()))
    return [slice(start, start + rows) for start in range(0, hidden.shape[:-1].numel(), rows)]


def _split_heads(projected: torch.Tensor, batch: int, head_dim: int) -> torch.Tensor:
    """`(batch, length, heads * head_dim)` or `(batch * length, heads * head_dim)` -> `(batch, heads, length, head_dim)`."""
    return projected.view(batch, -1, projected.shape[-1] // head_dim, head_dim).transpose(1, 2)


def _heads(linear: nn.Module, hidden: torch.Tensor, head_dim: int) -> torch.Tensor:
    return _split_heads(linear(hidden), hidden.shape[0], head_dim)


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


def _is_plain_linear(linear: nn.Module) -> bool:
    # Its weight can be read directly: a quantized weight (a tensor subclass) supports only the linear itself.
    return type(linear) is nn.Linear and type(linear.weight.data) is torch.Tensor


def _linear_into(linear: nn.Module, rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """`linear(rows)` written into `out` (rows of a larger buffer): directly for a plain bias-free `nn.Linear`."""
    if _is_plain_linear(linear) and linear.bias is None:
        return torch.mm(rows, linear.weight.t(), out=out)
    return out.copy_(linear(rows))


def _bias_mask(
    attention: nn.Module, allowed: torch.Tensor, query_length: int, key_length: int, dtype: torch.dtype
) -> torch.Tensor:
    """The relative position bias in `dtype` (the activations') where `allowed` (broadcastable boolean, `(batch, 1,
    query, key)`), the dtype's minimum elsewhere (what transformers' SDPA path computes in every layer), contiguous
    (SDPA would copy it)."""
    bias = attention.compute_bias(query_length, key_length)
    # compute_bias returns a permuted view; `where` would give its output that layout, which SDPA then copies.
    bias = bias.to(dtype).contiguous()
    return torch.where(allowed, bias, torch.finfo(bias.dtype).min).contiguous()


def _length_runs(attention_mask: torch.Tensor) -> list[tuple[int, int, int]] | None:
    """`(first row, end row, tokens)` of each run of consecutive rows with the same number of tokens, when every row
    is right-padded (its tokens first); None otherwise."""
    lengths = attention_mask.sum(-1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
        return None
    tokens, counts = torch.unique_consecutive(lengths, return_counts=True)
    runs, start = [], 0
    for length, count in zip(tokens.tolist(), counts.tolist()):
        runs.append((start, start + count, length))
        start += count
    return runs


def _self_attention(
    projections: list[torch.Tensor],
    batch: int,
    head_dim: int,
    mask: torch.Tensor | None,
    biases: dict[int, torch.Tensor] | None,
    runs: list[tuple[int, int, int]] | None,
) -> torch.Tensor:
    """T5 self-attention of the `(batch * length, inner)` query, key and value `projections`, without the output
    projection: `(batch, length, inner)`. With `runs`, over each run's tokens only (`biases[tokens]` is the `(1,
    heads, tokens, tokens)` position bias) and zeros on padded positions (nothing reads them: later keys stop at each
    row's tokens, and the decoder's cross-attention masks them); otherwise over all positions with `mask`."""
    query, keys, values = (_split_heads(projection, batch, head_dim) for projection in projections)
    if runs is None:
        output = functional.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=1.0)
        return output.transpose(1, 2).flatten(2)
    output = query.new_empty(batch, query.shape[2], query.shape[1], head_dim)  # (batch, length, heads, head_dim)
    for start, end, tokens in runs:
        part = functional.scaled_dot_product_attention(
            query[start:end, :, :tokens],
            keys[start:end, :, :tokens],
            values[start:end, :, :tokens],
            attn_mask=biases[tokens],
            scale=1.0,
        )
        output[start:end, :tokens] = part.transpose(1, 2)  # one strided copy, whatever layout SDPA returned
        output[start:end, tokens:] = 0
    return output.flatten(2)


def encode(
    encoder: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, split_by_length: bool = True
) -> torch.Tensor:
    """`encoder(inputs_embeds=..., attention_mask=...).last_hidden_state` of a T5 encoder stack, in eval mode.
    `attention_mask` is `(batch, length)`, 1 on tokens and 0 on padding. `split_by_length`: attend per run of rows of
    equal length where the rows are right-padded (see the module docstring); False always uses the combined mask."""
    batch, length, width = inputs_embeds.shape
    blocks = encoder.block
    first_attention = blocks[0].layer[0].SelfAttention
    runs = _length_runs(attention_mask) if split_by_length else None
    mask = biases = encoded = None
    if runs is None:
        allowed = attention_mask.bool()[:, None, None, :]
        mask = _bias_mask(first_attention, allowed, length, length, inputs_embeds.dtype)
    else:
        bias = first_attention.compute_bias(length, length).to(inputs_embeds.dtype)
        biases = {tokens: bias[:, :, :tokens, :tokens].contiguous() for _, _, tokens in runs}
    hidden = inputs_embeds.clone().view(-1, width)  # added to in place below
    row_blocks = _row_blocks(hidden, blocks[0].layer[-1])
    projections = _new_projections(hidden, first_attention)
    for rows in row_blocks:
        _project_rows(blocks[0].layer[0], hidden[rows], projections, rows)
    for index, block in enumerate(blocks):
        attention = block.layer[0].SelfAttention
        mixed = _self_attention(projections, batch, attention.key_value_proj_dim, mask, biases, runs)
        projections = None  # freed (as is `mixed` below) before the feed-forward's intermediates are allocated
        hidden.add_(attention.o(mixed.view(hidden.shape[0], -1)))
        del mixed
        # The rest is row-wise: the feed-forward and the next layer's RMSNorm and q/k/v projections (or the final
        # RMSNorm) a block of rows at a time (see `_row_blocks`).
        # Outputs allocated after the first block's feed-forward: with one block (GPU), after its intermediates.
        for rows in row_blocks:
            hidden_rows = hidden[rows]
            _feed_forward(block.layer[-1], hidden_rows)
            if index + 1 == len(blocks):
                if encoded is None:
                    encoded = torch.empty_like(hidden, dtype=encoder.final_layer_norm.weight.dtype)
                _rms_norm(encoder.final_layer_norm, hidden_rows, out=encoded[rows])
            else:
                next_layer = blocks[index + 1].layer[0]
                if projections is None:
                    projections = _new_projections(hidden, next_layer.SelfAttention)
                _project_rows(next_layer, hidden_rows, projections, rows)
    return encoded.view(batch, length, -1)


def _new_projections(hidden: torch.Tensor, attention: nn.Module) -> list[torch.Tensor]:
    """Buffers for the query, key and value projections of `hidden`'s rows."""
    return [hidden.new_empty(hidden.shape[0], attention.inner_dim) for _ in range(3)]


def _project_rows(layer: nn.Module, hidden_rows: torch.Tensor, projections: list[torch.Tensor], rows: slice) -> None:
    """RMSNorm and the q/k/v projections of T5LayerSelfAttention `layer` for `hidden_rows`, the block `rows`."""
    normed = _rms_norm(layer.layer_norm, hidden_rows)
    for name, projection in zip("qkv", projections):
        _linear_into(getattr(layer.SelfAttention, name), normed, projection[rows])


def _cross_attention_folded(
    attention: nn.Module, hidden: torch.Tensor, encoder_hidden_states: torch.Tensor, additive_mask: torch.Tensor
) -> torch.Tensor:
    """Cross-attention of a few decoder positions without projecting the encoder output to keys and values, by
    associativity, per head: q.(x W_k)^T = (q W_k).x^T and P.(x W_v) = (P.x).W_v. For T queries and L encoder
    positions of width d this costs about 4.T.L.d multiply-adds per head instead of 2.L.d.d_kv: 10-20x less for
    VQAScore's 2-3 answer tokens (d_kv = 64). `additive_mask` is `(batch, 1, L)`."""
    heads, head_dim = attention.n_heads, attention.key_value_proj_dim
    batch, length, width = *hidden.shape[:2], encoder_hidden_states.shape[-1]

    def by_head(tensor: torch.Tensor) -> torch.Tensor:  # (batch, length, heads * k) -> (heads, batch * length, k)
        return tensor.view(batch * length, heads, -1).transpose(0, 1)

    query = by_head(attention.q(hidden))
    folded_query = torch.bmm(query, attention.k.weight.view(heads, head_dim, width))  # (heads, batch * T, d)
    folded_query = folded_query.view(heads, batch, length, width).transpose(0, 1).reshape(batch, -1, width)
    scores = torch.baddbmm(additive_mask, folded_query, encoder_hidden_states.transpose(1, 2))  # (batch, heads*T, L)
    probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(hidden.dtype)
    mixed = torch.bmm(probabilities, encoder_hidden_states)  # (batch, heads * T, d)
    mixed = mixed.view(batch, heads, length, width).transpose(0, 1).reshape(heads, batch * length, width)
    output = torch.bmm(mixed, attention.v.weight.view(heads, head_dim, width).transpose(1, 2))  # (heads, batch*T, k)
    return attention.o(output.transpose(0, 1).reshape(batch, length, heads * head_dim))


def _can_fold(attention: nn.Module, query_length: int) -> bool:
    # Plain linears only (their weights are read directly), and only while it saves work (T < d_kv).
    plain = all(_is_plain_linear(getattr(attention, name)) for name in ("q", "k", "v"))
    return plain and query_length < attention.key_value_proj_dim


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
    dtype = encoder_hidden_states.dtype
    self_mask = _bias_mask(blocks[0].layer[0].SelfAttention, allowed, length, length, dtype)
    cross_mask = encoder_attention_mask.bool()[:, None, None, :]
    additive_cross_mask = torch.zeros(
        cross_mask.shape[0], 1, cross_mask.shape[-1], dtype=dtype, device=cross_mask.device
    )
    additive_cross_mask.masked_fill_(~cross_mask[:, 0], torch.finfo(dtype).min)
    hidden = decoder.embed_tokens(decoder_input_ids)
    for block in blocks:
        self_attention, cross_attention = block.layer[0], block.layer[1]
        hidden = hidden + _attention(
            self_attention.SelfAttention, _rms_norm(self_attention.layer_norm, hidden), self_mask
        )
        attention = cross_attention.EncDecAttention
        normed = _rms_norm(cross_attention.layer_norm, hidden)
        if _can_fold(attention, length):
            hidden.add_(_cross_attention_folded(attention, normed, encoder_hidden_states, additive_cross_mask))
        else:
            keys = _heads(attention.k, encoder_hidden_states, attention.key_value_proj_dim)
            values = _heads(attention.v, encoder_hidden_states, attention.key_value_proj_dim)
            hidden.add_(_attention(attention, normed, cross_mask, keys, values))
        hidden = _feed_forward(block.layer[-1], hidden)
    return _rms_norm(decoder.final_layer_norm, hidden)
