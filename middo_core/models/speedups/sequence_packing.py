"""A padding-free decoder pass for Llama-architecture models in bf16 on a CPU.

The loss pass pads each batch to its longest sequence, and on a CPU every padded position costs
its share of every matrix product. Here the sequences of a batch are laid end to end as one
(tokens x hidden) matrix: the linear layers, norms, MLPs, residual adds and the rotary embedding
run on real tokens only, and only attention sees a padded layout, per group of similar lengths
(sequences within `MAX_PADDING` of each other, padded to a multiple of `ALIGN` positions; a
group whose lengths all equal that width is attended in place, with no copy). As the batch no longer pays for padding, it can take sequences of any length up
to its token budget, so the products run on more rows per call and the pass makes fewer calls.

The arithmetic is transformers' own, operation for operation: the same modules are called for
the norms and the MLP, q, k and v are the projections' products side by side (one product on
their concatenated weights where the linear layers are prepacked: a third copy of those
weights, ~33 MB for SmolLM2-135M), the rotary embedding rounds where `apply_rotary_pos_emb`
rounds (in place: a native kernel, or PyTorch ops with a signed sine instead of a
concatenation), and attention is
`grouped_attention`, which the model already runs with (`attention.py`).

It applies only where that is so: the body's, the layers' and the attention modules' `forward`
are byte for byte transformers' Llama code (`llama_code`: Llama, SmolLM, and the models that
copy it), the model runs `grouped_attention`, and it is bf16 inference on a CPU; this package's
`FastPath.packs` decides. Anything else runs the model's own forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from middo_core.models.speedups.attention import grouped_attention
from middo_core.models.speedups.layers import is_packed, packed_weight, same_code

MAX_PADDING = 0.1  # attention groups: no sequence padded by more than this share of its group
ALIGN = 16  # and the group's width padded to a multiple of this many positions
QUERY_BLOCK = 96  # query positions per attention tile (4% less attention time than 128 here:
# less of each causal diagonal block is computed and thrown away)


def llama_code(model: Any) -> bool:
    """Do the model's body, decoder layers and attention modules run transformers' Llama code,
    byte for byte (what `packed_hidden_states` redoes on packed tokens)?"""
    try:
        from transformers.models.llama.modeling_llama import (
            LlamaAttention,
            LlamaDecoderLayer,
            LlamaModel,
        )
    except ImportError:
        return False
    body = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    if body is None or body is model or not same_code(type(body).forward, LlamaModel.forward):
        return False
    layers = list(body.layers[: body.config.num_hidden_layers])
    return bool(layers) and all(
        same_code(type(layer).forward, LlamaDecoderLayer.forward)
        and same_code(type(layer.self_attn).forward, LlamaAttention.forward)
        and "forward" not in layer.__dict__ and "forward" not in layer.self_attn.__dict__
        and getattr(layer.self_attn, "is_causal", True)
        for layer in layers)


@dataclass
class _Group:
    """Sequences [first, last) of the batch, attended together padded to `width`."""

    first: int
    last: int
    width: int
    rows: Any = None  # where the real tokens sit in the padded (sequences x width) layout
    buffers: Any = None  # padded q|k|v rows, reused by every layer (the padding stays zero)


def attention_groups(lens: list[int], max_padding: float = MAX_PADDING) -> list[_Group]:
    """Consecutive runs of `lens` (longest first) in which no sequence is padded by more than
    `max_padding` of the run's longest."""
    groups: list[_Group] = []
    for i, n in enumerate(lens):
        if groups and n >= (1 - max_padding) * groups[-1].width:
            groups[-1].last = i + 1
        else:
            groups.append(_Group(i, i + 1, n))
    return groups


def packed_hidden_states(model: Any, sequences: list[list[int]], kernels: Any = None) -> Any:
    """The final-norm hidden states of `sequences` (longest first), laid end to end:
    a (total tokens x hidden) bf16 tensor (`kernels`: the native kernels, or None). Only for a
    model `llama_code` accepts, running `grouped_attention`."""
    import torch

    lens = [len(s) for s in sequences]
    if any(a < b for a, b in zip(lens, lens[1:], strict=False)):
        raise ValueError("packed_hidden_states takes its sequences longest first")
    body = getattr(model, getattr(model, "base_model_prefix", "model"))
    ids = torch.tensor([t for s in sequences for t in s], dtype=torch.long)
    positions = torch.cat([torch.arange(n) for n in lens])
    groups = attention_groups(lens)
    starts = [0]
    for n in lens:
        starts.append(starts[-1] + n)
    with torch.inference_mode():
        hidden = body.embed_tokens(ids)
        # the rotary table for positions 0..longest-1, as the model makes it, then per token
        cos, sin = body.rotary_emb(hidden[None], position_ids=torch.arange(lens[0])[None])
        rotary = rotary_in_place(cos[0][positions], sin[0][positions], kernels)  # per token
        for group in groups:
            # the softmax and the mask run 2-4x faster on score rows of whole 64-byte lines
            group.width = -(-group.width // ALIGN) * ALIGN
            if any(n != group.width for n in lens[group.first:group.last]):
                group.rows = torch.cat([torch.arange(n) + b * group.width for b, n in
                                        enumerate(lens[group.first:group.last])])
        for layer in body.layers[: body.config.num_hidden_layers]:
            hidden = _layer(layer, hidden, rotary, groups, starts, kernels)
        return body.norm(hidden)


def _layer(layer: Any, hidden: Any, rotary: Any, groups: list[_Group],
           starts: list[int], kernels: Any) -> Any:
    """LlamaDecoderLayer.forward on packed tokens (the residual adds in place: `hidden` is this
    pass's own tensor)."""
    attn = layer.self_attn
    hidden.add_(attn.o_proj(_attention(attn, layer.input_layernorm(hidden), rotary, groups, starts,
                                       kernels)))
    return hidden.add_(layer.mlp(layer.post_attention_layernorm(hidden)))


def _attention(attn: Any, h: Any, rotary: Any, groups: list[_Group],
               starts: list[int], kernels: Any) -> Any:
    """LlamaAttention.forward's projections, rotary embedding and attention (before o_proj).

    q, k and v come from one product, as (tokens x [q heads | k heads | v heads] x head size);
    the rotary embedding turns q and k in place, together; a group that needs padding copies
    the tokens' rows into its padded buffer in one copy."""
    import torch

    tokens, d = h.shape[0], attn.head_dim
    heads, kv_heads = attn.q_proj.out_features // d, attn.k_proj.out_features // d
    qkv = _qkv(attn, h).view(tokens, heads + 2 * kv_heads, d)
    rotary(qkv[:, :heads + kv_heads])
    out = torch.empty((tokens, heads * d), dtype=h.dtype)
    for group in groups:
        a, b = starts[group.first], starts[group.last]
        n, width = group.last - group.first, group.width
        if group.rows is None:  # equal lengths: attend in place
            x = qkv[a:b]
        else:
            if group.buffers is None:
                group.buffers = torch.zeros((n * width, *qkv.shape[1:]), dtype=h.dtype)
            x = group.buffers.index_copy_(0, group.rows, qkv[a:b])
        x = x.view(n, width, -1, d).transpose(1, 2)
        q, k, v = x[:, :heads], x[:, heads:heads + kv_heads], x[:, heads + kv_heads:]
        if group.rows is None:
            grouped_attention(q, k, v, attn.scaling, block=QUERY_BLOCK,
                              out=out[a:b].view(n, width, heads, d), kernels=kernels)
        else:
            padded = grouped_attention(q, k, v, attn.scaling, block=QUERY_BLOCK, kernels=kernels)
            torch.index_select(padded.view(n * width, -1), 0, group.rows, out=out[a:b])
    return out


def _qkv(attn: Any, h: Any) -> Any:
    """q_proj, k_proj and v_proj of `h` side by side, from one product on their stacked weights
    where the layers are prepacked (else from the three layers)."""
    import torch

    projections = (attn.q_proj, attn.k_proj, attn.v_proj)
    if not all(is_packed(p) for p in projections):
        # not packed (no oneDNN, or no memory to spare for copies): no fused copy either
        return torch.cat([p(h) for p in projections], dim=-1)
    weight = packed_weight(attn, *projections, slot="qkv")
    bias = None if all(p.bias is None for p in projections) else torch.cat(
        [p.bias if p.bias is not None else h.new_zeros(p.out_features) for p in projections])
    return torch.ops.mkldnn._linear_pointwise(h, weight, bias, "none", [], "")


def rotary_in_place(cos: Any, sin: Any, kernels: Any = None) -> Any:
    """A function that applies apply_rotary_pos_emb's x * cos + rotate_half(x) * sin in place
    to x (tokens, heads, head size), rounding where it rounds; cos, sin: (tokens, head size).

    With the native kernels, one sweep. Else with halves (x1, x2), rotate_half(x) * sin is
    (x2 * -sin1, x1 * sin2), which is (x2, x1) * signed_sin for signed_sin = (-sin1, sin2)
    (negation is exact)."""
    import torch

    fused = kernels
    if fused is not None:
        cos, sin = cos.contiguous(), sin.contiguous()
        return lambda x: fused.rotary_(x, cos, sin)
    half = cos.shape[-1] // 2
    cos, signed_sin = cos[:, None], torch.cat((-sin[:, None, :half], sin[:, None, half:]), dim=-1)

    def rotate_(x: Any) -> None:
        turned = torch.empty(x.shape, dtype=x.dtype)
        torch.mul(x[..., half:], signed_sin[..., :half], out=turned[..., :half])
        torch.mul(x[..., :half], signed_sin[..., half:], out=turned[..., half:])
        x.mul_(cos).add_(turned)

    return rotate_
