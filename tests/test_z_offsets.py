"""tools/z_offsets.py: where a face's forward Z lies per channel against where a decode reads it."""

import json

from tools.z_offsets import main


def test_offsets_and_the_three_decodes_are_measured(tiny_x8, data_dir, tmp_path, capsys):
    out = tmp_path / "z.json"
    assert main(["--checkpoint", str(tiny_x8), "--train", str(data_dir / "faces" / "train"), "--val",
                 str(data_dir / "faces" / "val"), "--fit", "2", "--limit", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["train_faces"], result["val_faces"]) == (2, 1)
    assert 0 <= result["share_of_data_set_channel_means"] <= result["share_of_image_channel_means"] <= 1
    assert set(result["decodes"]) == {"z = 0", "z = channel means", "z = true"}
    true, zero = result["decodes"]["z = true"], result["decodes"]["z = 0"]
    assert true["psnr_y"] > 20 and true["lpips"] >= 0 and zero["psnr_y"] > 0  # the true Z rebuilds the face up to Y's and B's rounding
    assert "decode at z = true" in capsys.readouterr().out
