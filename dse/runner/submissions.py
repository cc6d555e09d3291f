"""The records of cluster submissions (pure): a `Submission` as <store>/jobs/<name>/job.json
holds it, and the `TaskState` of each of its tasks as dse.runner.cluster reads it back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TaskState:
    """Where one task of a submission stands: pending, running, requeued, or final (done,
    failed, stopped, cancelled, killed), with its host, why it ended badly, and its log."""

    index: int
    job_id: str
    state: str
    host: str | None = None
    message: str = ""
    log: str | None = None


@dataclass
class Submission:
    """A recorded submission (<store>/jobs/<name>/job.json): its array of `tasks` trainer
    tasks, their job ids, what it was asked to train, and (when read back) each task's own
    record and state."""

    name: str
    cluster: str
    tasks: int
    job_ids: list
    submitted_at: str
    host: str
    store: str
    spaces: list
    pending: int
    log_dir: str
    command: str = ""
    options: dict = field(default_factory=dict)
    task_records: dict = field(default_factory=dict)  # task index → the task's own record
    task_states: list = field(default_factory=list)   # [TaskState], by jobs()

    RECORD = ("name", "cluster", "tasks", "job_ids", "submitted_at", "host", "store", "spaces",
              "pending", "log_dir", "command", "options")

    @classmethod
    def from_record(cls, rec: dict) -> Submission:
        return cls(**{k: rec[k] for k in cls.RECORD if k in rec},
                   task_records=rec.get("task_records") or {})

    def record(self) -> dict:
        """What job.json holds."""
        return {k: getattr(self, k) for k in self.RECORD}

    def to_json(self) -> dict:
        return {**self.record(), "task_records": self.task_records,
                "task_states": [asdict(s) for s in self.task_states]}
