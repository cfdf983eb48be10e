"""The hyper-parameters, split by concern (nanoGPT and IRN keep model and training apart): ``BDFlowConfig`` is the
network (architecture, how B enters, the BAM that makes B), ``LossConfig`` the training loss (weights, schedule of
LPIPS and BAW, the training temperature). A checkpoint's config.json holds both as one flat object, as it always
did (``BDFlowConfig.from_dict`` and ``LossConfig.from_dict`` each take their fields from it).

Paper references: §3 (architecture), §4.2 (loss weights), Table 4 (BAM settings); ``docs/design.md`` of the
project records the decisions the paper leaves open.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .limits import check_tau, check_tau_b

SCALES = (2, 4, 8, 16, 32, 64)
B_TARGETS = ("density", "max", "lr")
WAVELETS = ("haar", "cdf53", "cdf97")  # bdflow.wavelets implements them
B_MODES = ("condition", "channel")
B_UPSAMPLES = ("bilinear", "nearest")
B_INITS = ("random", "zero")
Y_PHASES = ("centred", "corner")
Z_SCALES = ("learned", "fixed", "none")
LATENTS = ("nll", "w2", "w2_b")
CHANNEL_TERMS = ("moments", "w2")
TAU_DRAWS = ("fixed", "uniform")
BACKS = ("l1", "energy")
# Fields added after the first checkpoints shipped, with the value those checkpoints were trained with: a
# config.json without the field loads as before (the dataclass defaults are today's recipe, not the old one).
LEGACY = {"wavelet": "haar", "b_mode": "channel", "z_scale": "learned", "tau_train": 1.0, "lpips_from": 0.0,
          "b_upsample": "nearest", "b_init": "random", "y_phase": "corner", "latent": "nll"}


def crop_sizes(crop: int, batch_size, turns: str = "") -> tuple[tuple, ...]:
    """(crop, batch_size) of each training step in turn: the run's own, then each pair of ``TrainConfig.crop_turns``
    ("1024:1,768:2"; "" gives none). Training, the model card and the budgets table all read a run's crops here."""
    try:
        pairs = tuple((int(c), int(b)) for c, b in (pair.split(":") for pair in turns.split(",") if pair.strip()))
    except ValueError as err:
        raise ValueError(f"--crop-turns must be comma-separated CROP:BATCH pairs of integers (e.g. '1024:1'), got {turns!r}") from err
    return ((crop, batch_size), *pairs)


def option(default, help: str):
    """A dataclass field with its ``--help`` text (the training CLI builds its flags from these)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass
class BDFlowConfig:
    """The network: its architecture, how B enters the flow and the BAM that makes B (what changes the weights' shape
    or what the flow computes)."""

    # --- architecture (paper §3.2, design §1) -------------------------------------------------------
    scale: int = option(8, "rescaling factor 2^n, n = 1..6 (n wavelet levels)")
    wavelet: str = option("cdf97", "wavelet of each level: haar (the paper's) | cdf53 | cdf97 (design: 'Wavelet')")
    y_phase: str = option("centred", "where Y sits in its LR cell: centred (the coarsest level's low-pass on the odd samples: Y lines up with the bicubic LR and B) | corner (every level on the even samples: (s-1)/2 HR px up-left; the x32 and x64 models keep it from their parents); design: 'Y's phase'")
    blocks_per_level: int = option(2, "InvBlocks after each Haar transform (paper: 2)")
    level1_blocks: int = option(0, "InvBlocks at level 1, the finest (0: blocks_per_level); it runs on the most pixels with the thinnest tensors, a third of a light x8's time for a seventh of its MACs (design: 'Light fine levels')")
    hidden: int = option(32, "width of the subnets phi, rho, eta")
    res_blocks: int = option(1, "residual blocks (He et al.) inside each subnet")
    res_from_level: int = option(1, "subnets of levels res_from_level..n hold the res_blocks; the finer levels' are conv-ReLU-conv (level 1 holds most of the MACs; design: 'Light fine levels')")
    max_3x3_channels: int = option(1024, "subnet convolutions wider than this use 1x1 kernels (keeps x32/x64 small)")
    clamp: float = option(1.0, "affine scale exp(rho) stays in [e^-clamp, e^clamp]")
    boundary: bool = option(True, "store a boundary map B; False gives the IRN-style twin, whose B channel joins Z")
    b_mode: str = option("condition", "how B enters: condition (the BAM target, read by every coupling) | channel (the paper's 4th output channel)")
    b_upsample: str = option("bilinear", "how a condition B reaches each level's finer grid: bilinear | nearest (design: 'B as a condition')")
    b_from_level: int = option(1, "with B as a condition, the couplings of levels b_from_level..n read it (1: every level; n: the coarsest only)")
    b_init: str = option("zero", "initial weights of the subnets' B inputs: random (PyTorch's default, like the other inputs) | zero (B starts with no effect: the flow starts, and first trains, as its twin; design: 'B as a condition')")
    z_scale: str = option("fixed", "Z's per-channel scale exp(a): learned | fixed (set on the first batch) | none")

    # --- Boundary-aware Mask (Algorithm 1, design §3-4) -----------------------------------------------
    bam_sigma: float = option(1.0, "Gaussian blur sigma of step 1")
    bam_norm: int = option(2, "gradient magnitude: 1- or 2-norm (Table 4)")
    bam_threshold: float = option(50.0, "T in OpenCV Canny units (Table 4: best T = 50)")
    b_target: str = option("density", "LR-grid target for B: density | max | lr (design §3)")

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale}")
        if self.bam_norm not in (1, 2):
            raise ValueError(f"bam_norm must be 1 or 2, got {self.bam_norm}")
        if self.b_target not in B_TARGETS:
            raise ValueError(f"b_target must be one of {B_TARGETS}, got {self.b_target!r}")
        for name, allowed in (("wavelet", WAVELETS), ("b_mode", B_MODES), ("b_upsample", B_UPSAMPLES), ("b_init", B_INITS), ("y_phase", Y_PHASES), ("z_scale", Z_SCALES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("b_from_level", "res_from_level"):
            if not 1 <= getattr(self, name) <= self.levels:
                raise ValueError(f"{name} must be in 1..{self.levels} (the levels of x{self.scale}), got {getattr(self, name)}")
        for name in ("blocks_per_level", "hidden", "clamp", "max_3x3_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.level1_blocks < 0:
            raise ValueError(f"level1_blocks must be >= 0 (0: blocks_per_level), got {self.level1_blocks}")

    @property
    def levels(self) -> int:
        """n, the number of wavelet levels: scale = 2^n (``len(BDFlow.levels)``)."""
        return int(math.log2(self.scale))

    @property
    def b_channel(self) -> bool:
        """Whether B is one of the flow's output channels (the paper's design) rather than a condition."""
        return self.boundary and self.b_mode == "channel"

    @property
    def conditioned(self) -> bool:
        """Whether every coupling reads B (``b_mode="condition"``): the flow is [Y | Z] <-> X given B."""
        return self.boundary and self.b_mode == "condition"

    def phase(self, level: int) -> str:
        """The wavelet phase of ``level`` (1..n; bdflow.wavelets.PHASES): odd at the coarsest level when Y is centred."""
        return "odd" if self.y_phase == "centred" and level == self.levels else "even"

    def blocks_at(self, level: int) -> int:
        """The InvBlocks of ``level`` (1..n, finest first)."""
        return self.level1_blocks if level == 1 and self.level1_blocks else self.blocks_per_level

    def res_blocks_at(self, level: int) -> int:
        """The residual blocks inside each subnet of ``level`` (1..n, finest first)."""
        return self.res_blocks if level >= self.res_from_level else 0

    def reads_b(self, level: int) -> bool:
        """Whether the couplings of ``level`` (1..n, finest first) read B as a condition."""
        return self.conditioned and level >= self.b_from_level

    @property
    def channels(self) -> int:
        """Channels after the last level: 3 * 4^n = 3 s^2 (design §1)."""
        return 3 * self.scale**2

    @property
    def z_channels(self) -> int:
        """Z has 3 s^2 - 4 channels with B as a channel, else 3 s^2 - 3 (the twin's B channel joins Z)."""
        return self.channels - 3 - int(self.b_channel)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BDFlowConfig":
        """This config's fields of a config.json (LossConfig's fields there are skipped; LEGACY fills the missing)."""
        return _from_flat(cls, d)


@dataclass
class LossConfig:
    """The training loss of Eq. 7-11 (``bdflow.losses``): its weights, when LPIPS and BAW join, and the temperature of
    the Z the training decode sees. A checkpoint records it (the decoder's best tau is its ``tau_train``)."""

    # --- loss (Eq. 7-11; paper §4.2: lambda = 2, 2, 1, 16, 4; ours: 2, 2, 0.1, 16, 0) ---------------------
    lambda_forw: float = option(2.0, "lambda_1, L2 on Y against the bicubic LR (Eq. 8)")
    lambda_back: float = option(2.0, "lambda_2, BAW-weighted L1 on the reconstruction (Eq. 4, 9)")
    back: str = option("l1", "L_back: l1 (Eq. 9 on one sampled decode: the decoder learns to ignore Z) | energy (the energy score of two decodes of each image at one tau, over energy_patch-pixel patches: least when a decode at tau_train is a sample of X given Y and B, so Z carries the detail Y and B leave open; beyond the paper; docs/studies/gaussian-z.md \"A decoder that samples\")")
    energy_patch: int = option(8, "side in pixels of the patches the energy score (back = energy) compares as vectors of 3 p^2 values")
    energy_edge_spread: float = option(1.0, "the energy score's spread term in patches that hold a boundary (B_s > 0) weighs this much: below 1 the samples agree on the edges, which B states, and spread in the texture (an improper score there; below 0 they are charged for differing there; needs back = energy; the edges are BAM's on the training image, so the twin takes the same objective with nothing stored; docs/studies/gaussian-z.md \"Samples that agree on the edges (x8)\"; 1: the proper score)")
    energy_flat_spread: float = option(1.0, "the energy score's spread term in the flat patches (luma std over the patch below the batch's median) weighs this much: below 1 the samples agree on flat surfaces, where a draw costs LPIPS most (needs back = energy; docs/studies/where-z-is-sampled.md \"Samples that agree on flat surfaces\"; 1: the proper score)")
    energy_colour_spread: float = option(1.0, "the energy score's spread term counts the samples' difference in colour (each pixel's difference less its mean over R, G, B) at this weight: below 1 the samples agree in colour and differ in luminance, where a face's missing detail is (87 % of it; a sample of the flat-surface stage is half to seven tenths colour; needs back = energy; docs/studies/where-z-is-sampled.md \"Samples as a set\"; 1: the proper score)")
    lambda_lpips: float = option(0.1, "lambda_3, LPIPS on the reconstruction (paper 1; design: 'Loss reduction')")
    lambda_lpips_tau: float = option(0.0, "LPIPS's weight grows with each training decode's temperature: lambda_3 + lambda_lpips_tau * tau / tau_train, meant to keep tau 0 the fidelity decode while a warmer one trades PSNR for LPIPS; at x8 both moved alike (needs tau_train > 0; beyond the paper; docs/studies/gaussian-z.md \"LPIPS weighted by tau (x8)\"; 0: off)")
    lambda_texture: float = option(0.0, "weight of L_texture on warm decodes: each decode's AlexNet feature statistics (LPIPS's features, per channel mean and std over positions; lpips.LPIPS.texture) held to the truth's, weighed tau / tau_train, so a sample may put the face's kind of detail elsewhere than the truth has it (needs tau_train > 0; beyond the paper; docs/studies/where-z-is-sampled.md; 0: off)")
    lambda_critic: float = option(0.0, "weight of L_critic on warm decodes: a patch critic (bdflow.critic), trained beside the flow to tell training crops from decodes, scores each decode, weighed tau / tau_train, so a sample is asked to look like a face's detail and tau 0 stays the fidelity decode (needs tau_train > 0; beyond the paper; docs/studies/where-z-is-sampled.md \"A critic\"; 0: off)")
    critic_from: float = option(0.1, "L_critic joins after this fraction of training; the critic learns from the start, so the flow first hears it once it tells decodes from crops")
    lpips_from: float = option(0.5, "LPIPS switches on after this fraction of training")
    lpips_shift: bool = option(False, "LPIPS compares both images cropped at a random offset of 0..s-1 px, so no LR-cell phase lines up with AlexNet's strides (the x64 grid)")
    grid_gamma: float = option(0.0, "L_back weighs each offset inside the LR cell by (its batch squared error / the mean)^gamma, so an error that follows the LR grid costs more (the x64 grid; 0: off)")
    lambda_grid: float = option(0.0, "weight of L_grid: where inside the LR cell the decoded detail (X_back - bicubic_up(Y)) has its energy, held to where the true detail (X - bicubic_up(Y)) has it, as profiles over the cell's offsets (the x64 grid; beyond the paper; 0: off)")
    lambda_bam: float = option(16.0, "lambda_4, L2 on B against the BAM target (Eq. 10)")
    lambda_latent: float = option(0.0, "lambda_5, weight of L_latent (paper 4 with Eq. 11; design: 'Recipe')")
    latent: str = option("nll", "L_latent: nll (Eq. 11, E[z^2]/2: fixes Z's scale, not its tails) | w2 (the 1-D Wasserstein-2 distance of the batch's Z values to N(0, 1)) | w2_b (w2 in B's boundary cells and in the rest apart: Z no louder at the boundaries); docs/studies/gaussian-z.md")
    lambda_channels: float = option(0.0, "weight of L_channels: each Z channel's batch mean held at 0 and its std at 1 (the pooled latent terms leave a channel at its own offset; beyond the paper; docs/studies/gaussian-z.md; 0: off)")
    channels: str = option("moments", "L_channels: moments (each channel's batch mean 0 and std 1) | w2 (each channel's sorted values against the N(0, 1) quantiles: offset, spread and tails; docs/studies/gaussian-z.md \"Per channel\")")
    baw_alpha: float = option(0.3, "BAW switches on after this fraction of training (Eq. 4)")
    baw_twin: bool = option(False, "the twin (--no-boundary) still weights L_back by BAW: Table 3's 'BAW only' arm")
    tau_train: float = option(0.0, "temperature of the prior Z the training decode sees (paper: 1)")
    tau_draw: str = option("fixed", "how each training decode's temperature is drawn: fixed (every image at tau_train, the paper's) | uniform (each image's tau from U(0, tau_train): the decoder trains at every temperature the app's slider offers, tau 0 included; docs/studies/gaussian-z.md)")
    tau_b: float = option(1.0, "the share of the training decode's tau its Z keeps in B's boundary cells, as flow.sample_z draws it (1: the paper's one tau everywhere; 0: as a decode samples by default, Z at its mean where B marks a boundary; docs/studies/where-z-is-sampled.md)")

    def __post_init__(self):
        check_tau(self.tau_train)
        check_tau_b(self.tau_b)
        if self.latent not in LATENTS:
            raise ValueError(f"latent must be one of {LATENTS}, got {self.latent!r}")
        if self.channels not in CHANNEL_TERMS:
            raise ValueError(f"channels must be one of {CHANNEL_TERMS}, got {self.channels!r}")
        if self.tau_draw not in TAU_DRAWS:
            raise ValueError(f"tau_draw must be one of {TAU_DRAWS}, got {self.tau_draw!r}")
        if self.back not in BACKS:
            raise ValueError(f"back must be one of {BACKS}, got {self.back!r}")
        if self.energy_patch < 1:
            raise ValueError(f"energy_patch must be >= 1, got {self.energy_patch}")
        for name in ("energy_edge_spread", "energy_flat_spread", "energy_colour_spread"):
            value = getattr(self, name)
            if not -1 <= value <= 1 or (value != 1 and self.back != "energy"):
                raise ValueError(f"{name} must be in [-1, 1] and below 1 only with back = energy, got {value}")
        for name in ("lambda_lpips_tau", "lambda_texture", "lambda_critic"):
            if getattr(self, name) and not self.tau_train:
                raise ValueError(f"{name} weighs a term by the decode's temperature: it needs tau_train > 0")
        for name in ("grid_gamma", "lambda_grid", "lambda_channels", "lambda_lpips_tau", "lambda_texture", "lambda_critic"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def check(self, config: BDFlowConfig) -> None:
        """Refuse a loss that does not fit the model: BAW for the twin (``baw_twin``) needs the twin."""
        if self.baw_twin and config.boundary:
            raise ValueError("baw_twin applies to the twin only (boundary=False); a model with B always uses BAW")

    def uses_baw(self, config: BDFlowConfig) -> bool:
        """Whether L_back is weighted by the boundary magnitude (BAW, Eq. 4) once training passes baw_alpha: for every
        model with B, and for the twin with ``baw_twin``."""
        return config.boundary or self.baw_twin

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LossConfig":
        """This config's fields of a config.json (BDFlowConfig's fields there are skipped; LEGACY fills the missing)."""
        return _from_flat(cls, d)


def _from_flat(cls, d: dict):
    """``cls``'s fields of a flat config.json holding BDFlowConfig's and LossConfig's; names of neither are refused."""
    mine = {f.name for f in dataclasses.fields(cls)}
    known = mine | {f.name for c in (BDFlowConfig, LossConfig) for f in dataclasses.fields(c)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; known: {sorted(known)}")
    legacy = {k: v for k, v in LEGACY.items() if k in mine and k not in d}
    return cls(**legacy, **{k: v for k, v in d.items() if k in mine})
