"""Video reliability: does this clip's lip video belong to the sound? (after AV-RelScore and SyncNet)

A per-clip score r in (0, 1) that multiplies the output of every fused block (the per-sample scale `s` of
gated_xattn.py), so that lips that do not agree with the sound (another word, a still face, a large offset,
black frames) are switched off and the model falls back on the audio, which it then hears exactly as the
audio-only model does (`r = 0` leaves Whisper's own computation; closed gates still equal Whisper whatever r):

    audio  [B, T_enc, D] (50 Hz, detached) --mean of frame pairs--> [B, T_v, D] (25 Hz, frame t <-> video frame t)
           --LN, Linear--> [B, T_v, H] --Conv1d(k=5), GELU--> a
    video  [B, T_v, D] (projected, before positions) --LN, Linear--> --Conv1d(k=5), GELU--> v
    joint  [a, v, a * v] [B, T_v, 3H] --Conv1d(k=5), GELU, Linear--> frame logits [B, T_v]
    sync   cos(a_t, v_(t+l)) averaged over t, for every lag l in -L..L (L = 12 frames, +-480 ms): a lag
           profile [B, 2L + 1], as SyncNet slides the video along the sound --MLP--> sync logit [B]
    clip logit = mean of the frame logits over frames with both audio and video + sync logit;  r = sigmoid(it)

Each frame logit sees +-4 frames (160 ms) of both streams: a mouth that does not move, black frames, lips of
another word. The lag profile sees when the mouth moves: in sync its peak is at lag 0; a picture k frames late
puts it at l = +k (`ReliabilityOutput.offset_frames`), another word's lips leave it flat. The profile is trained
as SyncNet is, contrastively: on clips whose lips belong to their sound, lag 0 must win a softmax over the lags
(`sync_loss`), which every clean training clip teaches, not only the faulted ones. The audio is what the recogniser already
computed: Whisper's encoder output when only the decoder is fused (the encoder never sees the video), else the
encoder's convolutional stem (the fused encoder layers need r before they run). It is detached: the scorer reads
the audio, it does not train it.

Training (`AVWhisperConfig.video_reliability`): the recognition loss reaches r through the scale it applies, and
an agreement loss (binary cross-entropy, weight `reliability_loss_weight`) teaches it from the faults of
video_faults.py: clean clips 1, wrong lips / still faces / whole-clip black / large offsets 0, the partial faults
left to the recognition loss. The last layer starts at bias +3 (r = 0.95), so a model started from one without a
scorer begins where it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

INITIAL_LOGIT = 3.0  # sigmoid(3) = 0.953: a new scorer trusts the video as the model did without it
MAX_LAG = 12  # frames either way of the lag profile (480 ms at 25 fps)
SYNC_TEMPERATURE = 0.1  # of the softmax over lags in the contrastive sync loss


@dataclass
class ReliabilityOutput:
    logit: torch.Tensor  # [B] clip logit
    reliability: torch.Tensor  # [B] sigmoid(logit), or 0 where the clip has no video; the scale applied
    frame_logits: torch.Tensor  # [B, T_v]
    lag_profile: torch.Tensor | None = None  # [B, 2 MAX_LAG + 1] mean cos(a_t, v_(t+l)), lag l = index - MAX_LAG
    lag_valid: torch.Tensor | None = None  # [B, 2 MAX_LAG + 1] bool: the lag leaves frames to compare
    cross: torch.Tensor | None = None  # [B, B] mean cos(a of clip i, v of clip j) at lag 0 (NaN: nothing to compare)

    @property
    def offset_frames(self) -> torch.Tensor | None:
        """[B] long: the lag of the profile's peak (> 0: the picture lags the sound by that many frames)."""
        if self.lag_profile is None:
            return None
        prof = self.lag_profile.masked_fill(~self.lag_valid, -2.0)
        return prof.argmax(dim=1) - MAX_LAG


def audio_at_video_rate(audio: torch.Tensor, audio_mask: torch.Tensor | None, num_frames: int,
                        ratio: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """audio [B, T_a, D] at ``ratio`` x the video rate, mask [B, T_a] (True = padding) ->
    ([B, T_v, D] mean of each frame's ``ratio`` audio steps, padding mask [B, T_v]: True where no audio)."""
    bsz, t_a, dim = audio.shape
    valid = torch.ones(bsz, t_a, dtype=audio.dtype, device=audio.device) if audio_mask is None else \
        (~audio_mask.to(torch.bool)).to(audio.dtype)
    need = num_frames * ratio
    if t_a < need:  # the video outlasts the audio: the missing steps are padding
        audio = F.pad(audio, (0, 0, 0, need - t_a))
        valid = F.pad(valid, (0, need - t_a))
    audio, valid = audio[:, :need], valid[:, :need]
    summed = (audio * valid[..., None]).view(bsz, num_frames, ratio, dim).sum(dim=2)
    count = valid.view(bsz, num_frames, ratio).sum(dim=2)
    return summed / count.clamp_min(1.0)[..., None], count == 0


class AVReliabilityScorer(nn.Module):
    """Per-clip agreement of the lip video with the audio (see the module docstring)."""

    def __init__(self, d_model: int, hidden_dim: int = 128, kernel_size: int = 5):
        super().__init__()
        pad = kernel_size // 2
        self.audio_in = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden_dim))
        self.video_in = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden_dim))
        self.audio_conv = nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=pad)
        self.video_conv = nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=pad)
        self.joint_conv = nn.Conv1d(3 * hidden_dim, hidden_dim, kernel_size, padding=pad)
        self.frame_head = nn.Linear(hidden_dim, 1)
        nn.init.zeros_(self.frame_head.weight)
        nn.init.constant_(self.frame_head.bias, INITIAL_LOGIT)
        self.audio_sync = nn.Linear(hidden_dim, hidden_dim)
        self.video_sync = nn.Linear(hidden_dim, hidden_dim)
        # the profile and its peak over the other lags: [profile (2L + 1), peak at 0 - best elsewhere]
        self.sync_head = nn.Sequential(nn.Linear(2 * MAX_LAG + 2, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, 1))
        nn.init.zeros_(self.sync_head[2].weight)
        nn.init.zeros_(self.sync_head[2].bias)

    @staticmethod
    def lag_profile(a: torch.Tensor, v: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a, v [B, T, H] embeddings, valid [B, T] float -> (profile [B, 2L + 1]: mean over t of cos(a_t, v_(t+l)),
        valid lags [B, 2L + 1] bool). Pairs involving a padding frame are left out."""
        a, v = F.normalize(a.float(), dim=-1), F.normalize(v.float(), dim=-1)
        sim = a @ v.transpose(1, 2)  # [B, T(audio t), T(video t')]
        pair = valid.float()[:, :, None] * valid.float()[:, None, :]
        profile, ok = [], []
        for lag in range(-MAX_LAG, MAX_LAG + 1):
            s = torch.diagonal(sim, offset=lag, dim1=1, dim2=2)  # a_t . v_(t + lag)
            w = torch.diagonal(pair, offset=lag, dim1=1, dim2=2)
            if s.shape[-1] == 0:
                profile.append(sim.new_zeros(sim.shape[0]))
                ok.append(torch.zeros(sim.shape[0], dtype=torch.bool, device=sim.device))
                continue
            n = w.sum(dim=-1)
            profile.append((s * w).sum(dim=-1) / n.clamp_min(1.0))
            ok.append(n > 0)
        return torch.stack(profile, dim=1), torch.stack(ok, dim=1)

    @staticmethod
    def _conv(conv: nn.Conv1d, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> conv over time [B, T, C'] with padding frames zeroed before (they pad like the edges)."""
        x = x * valid[..., None]
        return F.gelu(conv(x.transpose(1, 2)).transpose(1, 2))

    def forward(self, audio_states: torch.Tensor, audio_padding_mask: torch.Tensor | None,
                video_states: torch.Tensor, video_padding_mask: torch.Tensor | None,
                audio_ratio: int = 2, content_negatives: bool = False) -> ReliabilityOutput:
        """
        Shapes:
            audio_states       [B, T_a, D]  audio at ``audio_ratio`` x the video rate (Whisper: 50 Hz, video 25 Hz)
            audio_padding_mask [B, T_a]     bool, True = padding; optional
            video_states       [B, T_v, D]  projected video, no positions
            video_padding_mask [B, T_v]     bool, True = padding; optional
            content_negatives  in training, also compare each clip's sound with the other clips' lips at lag 0
                               (``ReliabilityOutput.cross``, negatives of `sync_loss`)
        Returns:
            ReliabilityOutput: logit [B], reliability [B], frame_logits [B, T_v]
        """
        bsz, t_v = video_states.shape[:2]
        audio, no_audio = audio_at_video_rate(audio_states.detach().to(video_states.dtype), audio_padding_mask, t_v,
                                              audio_ratio)
        no_video = torch.zeros(bsz, t_v, dtype=torch.bool, device=video_states.device) \
            if video_padding_mask is None else video_padding_mask.to(torch.bool)
        valid = (~no_video & ~no_audio).to(video_states.dtype)  # [B, T_v]
        a = self._conv(self.audio_conv, self.audio_in(audio), valid)
        v = self._conv(self.video_conv, self.video_in(video_states), valid)
        joint = self._conv(self.joint_conv, torch.cat([a, v, a * v], dim=-1), valid)
        frame_logits = self.frame_head(joint).squeeze(-1)  # [B, T_v]
        count = valid.sum(dim=1)
        a_sync, v_sync = self.audio_sync(a), self.video_sync(v)
        profile, lag_ok = self.lag_profile(a_sync, v_sync, valid)
        cross = None
        if self.training and content_negatives:  # other clips' lips at lag 0: the contrastive loss's negatives of what is said
            an, vn = F.normalize(a_sync.float(), dim=-1), F.normalize(v_sync.float(), dim=-1)
            w = valid.float()
            num = torch.einsum("ith,jth,it,jt->ij", an, vn, w, w)
            den = torch.einsum("it,jt->ij", w, w)
            cross = torch.where(den > 0, num / den.clamp_min(1.0), torch.full_like(num, float("nan")))
        others = profile.masked_fill(~lag_ok, -2.0)
        others[:, MAX_LAG] = -2.0
        peak = (profile[:, MAX_LAG] - others.max(dim=1).values)[:, None]
        sync_logit = self.sync_head(torch.cat([profile * lag_ok, peak], dim=1).to(frame_logits.dtype)).squeeze(-1)
        logit = (frame_logits * valid).sum(dim=1) / count.clamp_min(1.0) + sync_logit
        reliability = torch.sigmoid(logit) * (count > 0).to(logit.dtype)
        return ReliabilityOutput(logit=logit, reliability=reliability, frame_logits=frame_logits,
                                 lag_profile=profile, lag_valid=lag_ok, cross=cross)


def sync_loss(out: ReliabilityOutput, in_sync: torch.Tensor) -> torch.Tensor | None:
    """SyncNet's contrastive objective on the lag profile: for clips whose lips belong to their sound
    (``in_sync`` [B] bool), lag 0 must win a softmax over the valid lags and, in training, over the other clips'
    lips at lag 0 (``out.cross``: what is said, not only when; temperature `SYNC_TEMPERATURE`); None when no
    clip qualifies."""
    keep = in_sync.to(out.lag_profile.device) & out.lag_valid[:, MAX_LAG]
    if not bool(keep.any()):
        return None
    logits = (out.lag_profile[keep] / SYNC_TEMPERATURE).masked_fill(~out.lag_valid[keep], -1e4)
    if out.cross is not None and out.cross.shape[0] > 1:
        others = out.cross[keep].clone()
        rows = torch.nonzero(keep).flatten()
        others[torch.arange(len(rows)), rows] = float("nan")  # the clip's own lips are the positive, at lag 0
        logits = torch.cat([logits, (others / SYNC_TEMPERATURE).nan_to_num(nan=-1e4)], dim=1)
    target = torch.full((logits.shape[0],), MAX_LAG, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target)


def agreement_loss(logit: torch.Tensor, agree: torch.Tensor) -> torch.Tensor | None:
    """Binary cross-entropy of clip logits [B] against agreement labels [B] (1, 0, NaN = no label); None when
    no sample has a label."""
    labelled = ~torch.isnan(agree)
    if not bool(labelled.any()):
        return None
    return F.binary_cross_entropy_with_logits(logit[labelled].float(), agree[labelled].to(logit.device).float())
