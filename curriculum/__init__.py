"""What to train on, in which order, with which settings: stages, presets and the run config."""

from curriculum.config import ConfigError, RunConfig, load_run_config
from curriculum.stages import Curriculum, CurriculumStage, StageSource

__all__ = ["ConfigError", "Curriculum", "CurriculumStage", "RunConfig", "StageSource", "load_run_config"]
