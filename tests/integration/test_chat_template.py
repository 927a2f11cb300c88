"""The chat template comes from the GGUF file: a Llama-3-style file gets Llama 3's format."""

import subprocess

import pytest

from rag.models import LlamaCppChat
from tests.conftest import BIN

pytestmark = [pytest.mark.integration, pytest.mark.store_independent]

# The Llama 3 chat format: a header per role, the text, an end-of-turn marker.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def prompt_of(settings, model: str) -> str:
    chat = LlamaCppChat(settings.model_copy(update={"llm_model": model, "n_ctx": 512}))
    return chat._formatter(messages=MESSAGES).prompt


def test_each_gguf_brings_its_own_chat_template(settings, tmp_path):
    llama3 = tmp_path / "llama3-template.gguf"
    subprocess.run(
        [
            str(BIN / "gguf-new-metadata"),
            "--chat-template",
            LLAMA3_TEMPLATE,
            "--force",
            settings.llm_model,
            str(llama3),
        ],
        check=True,
        capture_output=True,
    )
    smol = prompt_of(settings, settings.llm_model)
    assert "<|im_start|>system\nBe brief.<|im_end|>" in smol
    assert smol.rstrip().endswith("<|im_start|>assistant")
    llama = prompt_of(settings, str(llama3))
    assert "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" in llama
    assert llama.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "<|im_start|>" not in llama
