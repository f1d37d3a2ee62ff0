"""Model configuration (the `model:` section of a run config) and its size presets."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

# A preset fills the fields the user did not give; any field given explicitly wins.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # About 0.1M non-embedding parameters: trains in seconds on a CPU, for tests and smoke runs.
    "tiny": dict(n_layer=2, n_head=2, n_embd=64),
    # CPU experiments: 6 layers, 256 wide (the benchmark's model).
    "small": dict(n_layer=6, n_head=8, n_embd=256),
    # GPT-2 small, 124M parameters: for a GPU.
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, bias=True),
}
ModelPreset = Literal["tiny", "small", "gpt2"]


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: ModelPreset | None = Field(
        "small",
        description="Size preset: tiny (tests and smoke runs), small (CPU experiments), gpt2 (GPT-2 small, 124M "
        "parameters, for a GPU); explicit fields override it.",
    )
    n_layer: PositiveInt = Field(6, description="Transformer blocks.")
    n_head: PositiveInt = Field(8, description="Attention heads per block.")
    n_embd: PositiveInt = Field(256, description="Width of the residual stream.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability.")
    bias: bool = Field(False, description="Biases in linear layers and LayerNorms.")
    block_size: PositiveInt | None = Field(
        None,
        description="Longest context the model supports (sizes the rotary tables); default: the curriculum's "
        "largest block size.",
    )

    @model_validator(mode="after")
    def _apply_preset(self) -> ModelConfig:
        # Fill what the user left out from the preset. Writing to __dict__ keeps these fields
        # "unset", so a later `--set model.preset=...` still replaces them.
        for name, value in MODEL_PRESETS.get(self.preset or "", {}).items():
            if name not in self.model_fields_set:
                self.__dict__[name] = value
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"head size n_embd/n_head = {self.n_embd}/{self.n_head} = {self.n_embd // self.n_head} is odd; "
                "rotary position embeddings rotate pairs of channels: choose n_embd and n_head with an even head size"
            )
        return self

    def with_block_size(self, longest_stage: int) -> ModelConfig:
        """This config with `block_size` resolved: the value given, else `longest_stage` (the curriculum's
        largest block size). Which stages fit is checked by the trainer, which knows the stages."""
        if self.block_size is not None:
            return self
        return self.model_copy(update={"block_size": longest_stage})
