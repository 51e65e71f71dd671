"""Weight files we write are readable like the rest of the folder (safetensors alone writes them 0600)."""

import os
import stat

from transformers_clipflant5.projector import save_projector


def test_saved_weights_follow_the_umask(tiny, tmp_path):
    model, processor = tiny
    old_umask = os.umask(0o022)
    try:
        model.save_pretrained(tmp_path / "model")  # transformers' own save: left as safetensors wrote it
        save_projector(model, tmp_path / "projector")
        from transformers_clipflant5.hub.permissions import fix_weight_permissions

        fix_weight_permissions(tmp_path / "model")
    finally:
        os.umask(old_umask)
    for path in [tmp_path / "model" / "model.safetensors", tmp_path / "projector" / "projector.safetensors"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "model" / "config.json").stat().st_mode) == 0o644
