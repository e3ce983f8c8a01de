"""RWKV-4 (Hugging Face's `RwkvForCausalLM` architecture): its family interface over HF's five-tensor state."""
