"""A multi-branch network on whole clips (backbone ``multibranch``, ``extractor.input: waveform``).

The waveform of a clip goes through several branches whose embeddings are concatenated:

- the **spectrum branch** (``spectrum: true``): the magnitude of the full-length FFT of the whole
  crop (fine, stationary structure: exact harmonic and resonance frequencies) -> three strided 1-D
  convolutions (kernel/stride 256/64, 64/32, 16/4; ReLU, squeeze-excitation) -> flatten, so that
  *where* in the spectrum a peak lies stays known -> ``spectrum_layers`` x (linear, batch norm,
  ReLU) -> linear;
- one **STFT branch** per entry of ``stft`` (window ``n_fft``, hop ``hop_length``; several entries =
  several time-frequency resolutions): the magnitude spectrogram between ``f_min`` and ``f_max`` ->
  batch norm per frequency bin -> 7x7 stride-2 convolution and 3x3 max pool -> four stages of two
  pre-activation residual blocks (``width/8``, ``width/4``, ``width/2``, ``width`` channels, stride 2
  from the second stage on, squeeze-excitation) -> max over time -> flatten (channels x frequency)
  -> batch norm -> linear.

Each branch gives ``embedding_dim / n_branches`` values. The design is Wilkinghoff's dual-input
network (ICASSP 2023, ICASSP 2024) as run by the open ASD toolkit of Fujimura et al. (ASDKit,
ICASSP 2025; several STFT resolutions there too); docs/multibranch.md lists where each setting
comes from. The network is hand-written (no library offers it); its blocks are plain torch layers.

The network input is a crop of a fixed length, ``clip_seconds * sample_rate`` samples: the
flatten layers' sizes depend on it, so it is part of the config a checkpoint rebuilds from.
The spectra are computed in float32 with autocast off (a half-precision FFT of a length that is
not a power of two is refused by cuFFT, and full-length FFT magnitudes could overflow float16);
the convolutions after them run under the caller's autocast.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import torch
from pydantic import Field, ValidationError, model_validator
from torch import nn

from hybrid_asd.errors import ConfigError
from hybrid_asd.settings import Bool, InvalidKey, NonNegativeFloat, PositiveFloat, PositiveInt, Section

if TYPE_CHECKING:  # annotations only
    from hybrid_asd.data.settings import DataSettings
    from hybrid_asd.extractor.settings import ExtractorSettings

# The spectrum branch's convolutions (kernel, stride): Wilkinghoff 2023 and ASDKit alike.
SPECTRUM_CONVS = ((256, 64), (64, 32), (16, 4))
SE_RATIO = 16  # squeeze-excitation bottleneck (Wilkinghoff 2024, ASDKit)


# --- config ----------------------------------------------------------------------------------------
class StftSettings(Section):
    n_fft: PositiveInt = 1024
    hop_length: PositiveInt = 512


class MultiBranchSettings(Section):
    """``extractor.backbone.conf`` of ``multibranch``; defaults are the cited full-size network."""

    sample_rate: PositiveInt = 16000  # must equal data.sample_rate (checked when the config loads)
    clip_seconds: PositiveFloat = 10.0  # network input length (training crops and extraction windows)
    spectrum: Bool = True  # the full-length magnitude-spectrum branch
    stft: list[StftSettings] = Field(default_factory=lambda: [StftSettings()])  # one 2-D branch each
    f_min: NonNegativeFloat = 200.0  # STFT branches keep the bins between f_min and f_max
    f_max: PositiveFloat | None = 8000.0  # null: the Nyquist frequency
    width: PositiveInt = 128  # channels: spectrum convs and MLP = width; STFT stages width/8 .. width
    spectrum_layers: PositiveInt = 4  # (linear, batch norm, ReLU) layers before the spectrum embedding
    se: Bool = True  # squeeze-excitation after every convolution block
    temporal_norm: Bool = False  # subtract each STFT bin's mean over time (Wilkinghoff 2023's option)
    bias: Bool = False  # biases and batch-norm affine terms in every layer (see MultiBranchNet)

    @property
    def samples(self) -> int:
        """Network input length in samples."""
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def n_branches(self) -> int:
        return int(self.spectrum) + len(self.stft)

    @property
    def top_frequency(self) -> float:
        return self.f_max if self.f_max is not None else self.sample_rate / 2

    def band(self, n_fft: int) -> tuple[int, int]:
        """First and last STFT bin (inclusive) between ``f_min`` and ``f_max`` for window ``n_fft``."""
        step = self.sample_rate / n_fft
        first = math.ceil(self.f_min / step - 1e-9)
        last = min(math.floor(self.top_frequency / step + 1e-9), n_fft // 2)
        return first, last

    @model_validator(mode="after")
    def _consistent(self) -> "MultiBranchSettings":
        if self.n_branches == 0:
            raise InvalidKey("stft", [], "no branch: set spectrum: true or list at least one STFT")
        if self.width % 8:
            raise InvalidKey("width", self.width, "must be a multiple of 8 (the STFT stages use width/8 .. width)")
        if self.samples < 2:
            raise InvalidKey("clip_seconds", self.clip_seconds, "gives fewer than 2 samples")
        if self.top_frequency > self.sample_rate / 2:
            raise InvalidKey("f_max", self.f_max,
                             f"must be at most the Nyquist frequency ({self.sample_rate / 2:g} Hz)")
        if self.top_frequency <= self.f_min:
            raise InvalidKey("f_max", self.f_max, f"must be above f_min ({self.f_min:g} Hz)")
        for i, stft in enumerate(self.stft):
            if stft.n_fft // 2 >= self.samples:
                raise InvalidKey(f"stft.{i}.n_fft", stft.n_fft, f"needs a crop longer than n_fft / 2 samples; "
                                                               f"clip_seconds gives {self.samples}")
            first, last = self.band(stft.n_fft)
            if last < first:
                raise InvalidKey(f"stft.{i}.n_fft", stft.n_fft, "leaves no STFT bin between f_min and f_max")
        return self


def parse_settings(conf: Mapping[str, Any] | None) -> MultiBranchSettings:
    """The typed conf; the first problem raises :class:`InvalidKey` naming its key within the conf."""
    try:
        return MultiBranchSettings.model_validate(dict(conf or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        blamed = (err.get("ctx") or {}).get("error")
        if isinstance(blamed, InvalidKey):
            raise InvalidKey(".".join(filter(None, [key, blamed.key])), blamed.value, blamed.message) from None
        if err["type"] == "extra_forbidden":
            raise InvalidKey(key, err["input"], f"unknown key; known: {', '.join(MultiBranchSettings.model_fields)}"
                             ) from None
        message = str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
        raise InvalidKey(key, err.get("input"), message) from None


# --- building blocks ---------------------------------------------------------------------------------
class SqueezeExcitation(nn.Module):
    """Channel gates from the mean over all positions (Hu et al. 2018), for 1-D and 2-D maps.

    Hand-written: torchvision's version is 2-D only and has biases; the cited designs use none.
    """

    def __init__(self, channels: int, ratio: int = SE_RATIO):
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, channels, bias=False), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.gate(x.mean(dim=tuple(range(2, x.dim()))))
        return x * weights.view(*weights.shape, *([1] * (x.dim() - 2)))


def same_padding(length: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(left, right, output length) of a strided convolution padded to ``ceil(length / stride)``
    outputs (TensorFlow's ``padding="same"``, which Wilkinghoff's network uses)."""
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2, out


def mlp_layer(n_in: int, n_out: int, bias: bool) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out, bias=bias), nn.BatchNorm1d(n_out, affine=bias), nn.ReLU()]


class SpectrumBranch(nn.Module):
    """|FFT| of the whole crop -> strided 1-D convolutions -> flatten -> MLP -> ``out_dim``."""

    def __init__(self, samples: int, out_dim: int, s: MultiBranchSettings):
        super().__init__()
        layers: list[nn.Module] = []
        length, channels = samples // 2 + 1, 1
        for kernel, stride in SPECTRUM_CONVS:
            left, right, length = same_padding(length, kernel, stride)
            layers += [nn.ConstantPad1d((left, right), 0.0), nn.Conv1d(channels, s.width, kernel, stride, bias=s.bias),
                       nn.ReLU()]
            layers += [SqueezeExcitation(s.width)] if s.se else []
            channels = s.width
        self.convs = nn.Sequential(*layers)
        mlp = mlp_layer(s.width * length, s.width, s.bias)
        for _ in range(s.spectrum_layers - 1):
            mlp += mlp_layer(s.width, s.width, s.bias)
        self.mlp = nn.Sequential(nn.Flatten(), *mlp, nn.Linear(s.width, out_dim, bias=s.bias))

    @staticmethod
    def magnitude(wave: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` -> ``(B, 1, L // 2 + 1)`` float32 (orthonormal scaling keeps it in float16 range)."""
        with torch.autocast(wave.device.type, enabled=False):
            return torch.fft.rfft(wave.float(), norm="ortho").abs().unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.convs(self.magnitude(wave)))


class ResidualBlock(nn.Module):
    """Pre-activation residual block: BN -> (ReLU, 3x3 conv, BN, ReLU, 3x3 conv, SE) + shortcut.

    The shortcut of a block that downsamples or widens is a 3x3 max pool and a 1x1 convolution
    (as in the cited networks); otherwise the (normalised) input itself.
    """

    def __init__(self, n_in: int, n_out: int, stride: int, se: bool, bias: bool):
        super().__init__()
        self.norm = nn.BatchNorm2d(n_in, affine=bias)
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(n_in, n_out, 3, stride, padding=1, bias=bias), nn.BatchNorm2d(n_out, affine=bias),
            nn.ReLU(), nn.Conv2d(n_out, n_out, 3, 1, padding=1, bias=bias),
            SqueezeExcitation(n_out) if se else nn.Identity(),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or n_in != n_out:
            pool = nn.MaxPool2d(3, stride, padding=1) if stride != 1 else nn.Identity()
            self.shortcut = nn.Sequential(pool, nn.Conv2d(n_in, n_out, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.shortcut(x) + self.body(x)


def halve(n: int) -> int:
    """Output size of a stride-2 layer with 'same' padding (the stem, the max pool, stages 2-4)."""
    return -(-n // 2)


class StftBranch(nn.Module):
    """Magnitude STFT (one resolution) -> per-bin batch norm -> ResNet-style 2-D stack -> ``out_dim``."""

    def __init__(self, stft: StftSettings, out_dim: int, s: MultiBranchSettings):
        super().__init__()
        self.n_fft, self.hop_length = stft.n_fft, stft.hop_length
        self.first_bin, self.last_bin = s.band(stft.n_fft)
        self.temporal_norm = s.temporal_norm
        # not saved with the weights: the config rebuilds it
        self.register_buffer("window", torch.hann_window(stft.n_fft), persistent=False)
        n_bins = self.last_bin - self.first_bin + 1
        c = s.width // 8
        widths = (c, c, 2 * c, 4 * c, 8 * c)
        blocks: list[nn.Module] = []
        for stage, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            stride = 1 if stage == 0 else 2
            blocks += [ResidualBlock(n_in, n_out, stride, s.se, s.bias), ResidualBlock(n_out, n_out, 1, s.se, s.bias)]
        self.freq_norm = nn.BatchNorm1d(n_bins, affine=s.bias)
        self.stem = nn.Sequential(
            nn.Conv2d(1, c, 7, 2, padding=3, bias=s.bias), nn.BatchNorm2d(c, affine=s.bias), nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1),
        )
        self.blocks = nn.Sequential(*blocks)
        out_bins = n_bins
        for _ in range(5):  # stem conv, max pool, stages 2-4
            out_bins = halve(out_bins)
        self.head = nn.Sequential(
            nn.Flatten(), nn.BatchNorm1d(widths[-1] * out_bins, affine=s.bias),
            nn.Linear(widths[-1] * out_bins, out_dim, bias=s.bias),
        )

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` -> magnitude ``(B, bins, frames)`` float32 between f_min and f_max."""
        with torch.autocast(wave.device.type, enabled=False):
            spec = torch.stft(
                wave.float(), self.n_fft, self.hop_length, window=self.window, center=True, pad_mode="reflect",
                normalized=True, return_complex=True,
            ).abs()[:, self.first_bin:self.last_bin + 1]
            if self.temporal_norm:
                spec = spec - spec.mean(dim=2, keepdim=True)
            return spec

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.freq_norm(self.spectrogram(wave)).unsqueeze(1)  # (B, 1, F, T)
        x = self.blocks(self.stem(x))  # (B, C, F', T')
        return self.head(x.amax(dim=3))  # max over time -> (B, C, F') -> flatten


# --- the backbone ---------------------------------------------------------------------------------
class MultiBranchNet(nn.Module):
    """Spectrum branch + STFT branches on a waveform crop; embeddings concatenated.

    ``forward`` takes ``(B, 1, samples)`` or ``(B, samples)`` waveforms of exactly
    ``clip_seconds * sample_rate`` samples and returns ``(B, embedding_dim)``.

    No bias terms and no batch-norm shift or scale (``bias: false``, as in Wilkinghoff 2023 and
    ASDKit): the embeddings are only compared by angle (sub-cluster AdaCos centres, cosine kNN),
    and a constant offset that does not depend on the input lets the network place every clip
    near its class centres without looking at the clip, a trivial solution that would put
    anomalous clips there too (the argument of Deep SVDD, Ruff et al. 2018, for dropping biases
    in one-class objectives; Wilkinghoff 2023 found it helps these angular losses).
    """

    input_kind = "waveform"  # extractor.input must be "waveform" (checked when the config loads)

    def __init__(self, embedding_dim: int, **conf: Any):
        super().__init__()
        try:
            s = parse_settings(conf)
        except InvalidKey as exc:
            raise ConfigError(f"extractor.backbone.conf.{exc}") from None
        if embedding_dim % s.n_branches:
            raise ConfigError(f"extractor.embedding_dim = {embedding_dim}: must be divisible by the number of "
                              f"branches of backbone 'multibranch' ({s.n_branches})")
        self.settings = s
        self.samples = s.samples
        out_dim = embedding_dim // s.n_branches
        branches: list[nn.Module] = [SpectrumBranch(s.samples, out_dim, s)] if s.spectrum else []
        branches += [StftBranch(stft, out_dim, s) for stft in s.stft]
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wave = x.reshape(x.shape[0], -1)
        if wave.shape[1] != self.samples:
            raise ValueError(f"backbone 'multibranch' takes crops of {self.samples} samples "
                             f"(clip_seconds x sample_rate), got {wave.shape[1]}")
        return torch.cat([branch(wave) for branch in self.branches], dim=1)

    # --- config checks (called by hybrid_asd.extractor.backbones when a config loads) ----------
    @staticmethod
    def check_conf(conf: Mapping[str, Any]) -> None:
        """Types and ranges of the conf; :class:`InvalidKey` relative to the conf."""
        parse_settings(conf)

    @staticmethod
    def check_extractor(extractor: ExtractorSettings) -> None:
        """The extractor keys this network constrains; :class:`InvalidKey` relative to the section."""
        n = parse_settings(extractor.backbone.conf).n_branches
        if extractor.embedding_dim % n:
            raise InvalidKey("embedding_dim", extractor.embedding_dim,
                             f"must be divisible by the number of branches of backbone 'multibranch' ({n})")

    @staticmethod
    def check_data(conf: Mapping[str, Any], data: DataSettings) -> None:
        """The backbone conf against the data section; :class:`InvalidKey` relative to the conf."""
        rate = parse_settings(conf).sample_rate
        if rate != data.sample_rate:
            raise InvalidKey("sample_rate", rate, f"must equal data.sample_rate ({data.sample_rate}): the network's "
                                                  "input length and STFT band are set in seconds and Hz")
