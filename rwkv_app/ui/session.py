"""Session tab: download this session as a file, upload one to resume it (size-limited, validated)."""
from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import gradio as gr

from .common import QUIET, guarded

# After the file is made, the browser follows its link at once: one click downloads the session (or the state).
def follow_link(box: str) -> str:
    return f"() => {{ const a = document.querySelector('#{box} a[download], #{box} a'); if (a) a.click(); }}"


def build(ctx, refresh):
    limit = ctx.playground.options.max_upload_mb
    gr.Markdown(f"A session file holds the whole tree (every branch, chat and kept state). It only loads on the "
                f"same model. Uploads are limited to {limit:g} MiB.")
    with gr.Row():
        export = gr.Button("Download this session", variant="primary", elem_id="session-export")
        download = gr.File(label="Session file", interactive=False, elem_id="session-download")
    upload = gr.File(label="Upload a session file (.zip)", type="filepath", elem_id="session-upload")
    # any file type: the service names a wrong one in a warning (Gradio's own check is a red error)
    load = gr.Button("Resume the uploaded session", variant="primary", elem_id="session-load")
    status = gr.Markdown(elem_id="session-status")
    gr.Markdown("A state file holds one node's RNN state (safetensors; RWKV-7 in RWKV-Runner's `time_state` layout), "
                "to share a persona built by prompting, or to load with `--state` and other RWKV tools.")
    with gr.Row():
        state_node = gr.Textbox(label="Node id (empty: the current node)", elem_id="state-file-node")
        export_state = gr.Button("Download the node's state", elem_id="state-file-export")
        state_download = gr.File(label="State file", interactive=False, elem_id="state-file-download")
    folder = tempfile.mkdtemp(prefix="rwkv-sessions-")
    wire(ctx, refresh, locals())
    return {}


def export_folder(root: str) -> Path:
    """A new folder under the app's private (0700) export root with an unguessable name: one session's file
    never sits beside another's. Gradio serves the download from its own cache, under a salted hash."""
    return Path(root) / secrets.token_hex(16)


def wire(ctx, refresh, c):
    @guarded
    def export(session, request: gr.Request):
        session = ctx.ensure(session, request)
        return session.export(export_folder(c["folder"])), session

    @guarded
    def export_state(node_id, session, request: gr.Request):
        session = ctx.ensure(session, request)
        return session.export_state(node_id or None, export_folder(c["folder"])), session

    @guarded
    def load(path, session, request: gr.Request):
        session = ctx.ensure(session, request)
        session.load_file(path)
        return f"Resumed the uploaded session ({session.node_count()} nodes).", session

    exported = c["export"].click(export, [ctx.state], [c["download"], ctx.state], api_name="export_session",
                                 show_progress=QUIET)
    exported.success(None, None, None, js=follow_link("session-download"), api_visibility="private")
    state_exported = c["export_state"].click(export_state, [c["state_node"], ctx.state],
                                             [c["state_download"], ctx.state], api_name="export_state",
                                             show_progress=QUIET)
    state_exported.success(None, None, None, js=follow_link("state-file-download"), api_visibility="private")
    cleared = c["load"].click(lambda: "", None, c["status"], api_visibility="private", show_progress="hidden")
    loaded = cleared.then(load, [c["upload"], ctx.state], [c["status"], ctx.state], api_name="import_session",
                          show_progress=QUIET)  # a refused file leaves no earlier message beside its toast
    refresh.append(loaded)
    ctx.reopened.append(loaded)
