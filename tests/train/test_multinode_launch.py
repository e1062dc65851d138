"""Multi-node training commands: one per node, the same rendezvous, rank 0 reporting progress."""

from __future__ import annotations

import pytest

from middo_core.train.launch import launch_command, multinode_commands


def _flag(cmd: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in cmd if a.startswith(f"--{name}="))


def test_torchrun_commands_share_the_rendezvous_and_differ_only_by_node_rank(tmp_path):
    cmds = multinode_commands(tmp_path, 2, nnodes=4, gpus_per_node=8, master_addr="10.0.0.1",
                              run_id="train-x")
    assert len(cmds) == 4
    assert [_flag(c, "node_rank") for c in cmds] == ["0", "1", "2", "3"]
    for c in cmds:
        assert c[1:3] == ["-m", "torch.distributed.run"] and "--standalone" not in c
        assert _flag(c, "nnodes") == "4" and _flag(c, "nproc_per_node") == "8"
        assert _flag(c, "master_addr") == "10.0.0.1" and _flag(c, "master_port") == "29500"
        assert c[c.index("--iteration") + 1] == "2" and c[c.index("--run-id") + 1] == "train-x"


def test_accelerate_counts_every_process_and_deepspeed_runs_from_node_0(tmp_path):
    acc = launch_command(tmp_path, 0, 8, launcher="accelerate", nnodes=2, node_rank=1,
                         master_addr="head", master_port=6000)
    assert _flag(acc, "num_processes") == "16" and _flag(acc, "machine_rank") == "1"
    assert _flag(acc, "main_process_ip") == "head" and _flag(acc, "main_process_port") == "6000"
    ds = launch_command(tmp_path, 0, 8, launcher="deepspeed", nnodes=2, master_addr="head",
                        hostfile=tmp_path / "hosts")
    assert ds[2] == "deepspeed.launcher.runner" and "--module" in ds
    assert _flag(ds, "num_nodes") == "2" and _flag(ds, "hostfile") == str(tmp_path / "hosts")
    with pytest.raises(ValueError, match="node 0 only"):
        launch_command(tmp_path, 0, 8, launcher="deepspeed", nnodes=2, node_rank=1, master_addr="h")


def test_bad_multinode_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="master_addr"):
        launch_command(tmp_path, 0, 8, nnodes=2)
    with pytest.raises(ValueError, match="node_rank"):
        launch_command(tmp_path, 0, 8, nnodes=2, node_rank=2, master_addr="h")
    single = launch_command(tmp_path, 0, 8)  # one node: unchanged
    assert "--standalone" in single


def test_train_nodes_job_is_recorded_and_returns_the_other_nodes_commands(workspace_factory):
    from middo_core.jobs import cancel_job, job_status
    from middo_core.train.nodes import KIND, start_multinode_train

    ws = workspace_factory("nodes")
    with pytest.raises(ValueError, match="master_addr"):
        start_multinode_train(ws, 0, nnodes=2, gpus_per_node=1, master_addr="")
    run_id, others = start_multinode_train(ws, 0, nnodes=3, gpus_per_node=1,
                                           master_addr="127.0.0.1", master_port=29599)
    assert [_flag(c, "node_rank") for c in others] == ["1", "2"]
    status = job_status(ws, run_id)
    assert status["kind"] == KIND and status["args"]["nnodes"] == 3
    final = cancel_job(ws, run_id, grace_s=2.0)  # node 0 waits for nodes that never come
    assert final["status"] in ("cancelled", "failed")
