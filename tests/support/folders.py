"""What a converted CLIP-FlanT5 Hub folder holds."""

from pathlib import Path


EXPECTED_FILES = {
    "README.md",
    "chat_template.jinja",
    "config.json",
    "configuration_clip_flant5.py",
    "generation_config.json",
    "image_processing_clip_flant5.py",
    "input_checks_clip_flant5.py",
    "model.safetensors",
    "modeling_clip_flant5.py",
    "processing_clip_flant5.py",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def files_in(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
