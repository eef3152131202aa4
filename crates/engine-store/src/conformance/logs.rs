//! Checks of the task and event logs: ids, queries and bounds.

use nosplit_engine_core::model::{EngineEvent, Task};

use super::{event, expect_not_found, ok, task, Factory};
use crate::{EventQuery, Limits, Store};

fn ids(tasks: &[Task]) -> Vec<u64> {
    tasks.iter().map(|t| t.id).collect()
}

fn seqs(events: &[EngineEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn list(s: &dyn Store, q: EventQuery) -> Vec<u64> {
    seqs(&ok(s.list_events(&q), "list events"))
}

pub(super) fn tasks_get_ids_in_order_and_update_by_id(make: Factory<'_>) {
    let s = make(Limits::default());
    let got: Vec<u64> = (1..=3)
        .map(|a| ok(s.append_task(&task("v1", a)), "append"))
        .collect();
    assert_eq!(
        got,
        vec![1, 2, 3],
        "ids are 1, 2, 3 (the task's own id is ignored)"
    );
    let t2 = ok(s.get_task(2), "get");
    assert_eq!(
        t2,
        Task {
            id: 2,
            ..task("v1", 2)
        }
    );

    let done = Task {
        state: "succeeded".to_string(),
        finished_ms: Some(4242),
        ..t2
    };
    ok(s.update_task(&done), "update");
    assert_eq!(ok(s.get_task(2), "get after update"), done);
    assert_eq!(
        ok(s.get_task(1), "other task"),
        Task {
            id: 1,
            ..task("v1", 1)
        },
        "update touches one task"
    );
    expect_not_found(
        s.update_task(&Task { id: 42, ..done }),
        "task",
        "42",
        "update absent",
    );
    expect_not_found(
        s.get_task(42),
        "task",
        "42",
        "a refused update must not create",
    );
}

pub(super) fn tasks_list_the_latest_n_filtered_by_vm(make: Factory<'_>) {
    let s = make(Limits::default());
    for (i, v) in ["a", "b", "a", "b", "a"].into_iter().enumerate() {
        ok(
            s.append_task(&task(v, u32::try_from(i).unwrap_or(0))),
            "append",
        );
    }
    assert_eq!(
        ids(&ok(s.list_tasks(None, 3), "latest 3")),
        vec![3, 4, 5],
        "latest N, oldest first"
    );
    assert_eq!(
        ids(&ok(s.list_tasks(None, 100), "all")),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        ids(&ok(s.list_tasks(Some("a"), 2), "a latest 2")),
        vec![3, 5]
    );
    assert_eq!(
        ids(&ok(s.list_tasks(Some("a"), 10), "a all")),
        vec![1, 3, 5]
    );
    assert_eq!(ids(&ok(s.list_tasks(Some("b"), 10), "b all")), vec![2, 4]);
    assert!(ok(s.list_tasks(Some("zz"), 10), "unknown vm").is_empty());
    assert!(ok(s.list_tasks(None, 0), "limit 0").is_empty());
}

pub(super) fn tasks_are_bounded(make: Factory<'_>) {
    let s = make(Limits {
        max_tasks: 3,
        ..Limits::default()
    });
    for a in 1..=5 {
        ok(s.append_task(&task("v1", a)), "append");
    }
    assert_eq!(
        ids(&ok(s.list_tasks(None, 10), "list")),
        vec![3, 4, 5],
        "only the last 3 are kept"
    );
    expect_not_found(s.get_task(1), "task", "1", "get dropped");
    expect_not_found(
        s.update_task(&Task {
            id: 2,
            ..task("v1", 2)
        }),
        "task",
        "2",
        "update dropped",
    );
    assert_eq!(
        ok(s.append_task(&task("v1", 6)), "append after drop"),
        6,
        "ids are never reused"
    );
    assert_eq!(ids(&ok(s.list_tasks(None, 10), "list")), vec![4, 5, 6]);
}

pub(super) fn events_get_seqs_and_list_after_with_limit(make: Factory<'_>) {
    let s = make(Limits::default());
    let got: Vec<u64> = (0..5)
        .map(|_| {
            ok(
                s.append_event(&event("host-suspect", "info", Some("h1"), None)),
                "append",
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![1, 2, 3, 4, 5],
        "seqs are 1.. (the event's own seq is ignored)"
    );
    let all = ok(s.list_events(&EventQuery::default()), "list all");
    assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        all[0],
        EngineEvent {
            seq: 1,
            ..event("host-suspect", "info", Some("h1"), None)
        }
    );
    assert_eq!(
        list(
            &*s,
            EventQuery {
                after: 2,
                ..EventQuery::default()
            }
        ),
        vec![3, 4, 5]
    );
    assert_eq!(
        list(
            &*s,
            EventQuery {
                after: 2,
                limit: Some(2),
                ..EventQuery::default()
            }
        ),
        vec![3, 4]
    );
    assert!(list(
        &*s,
        EventQuery {
            after: 5,
            ..EventQuery::default()
        }
    )
    .is_empty());
    assert!(list(
        &*s,
        EventQuery {
            limit: Some(0),
            ..EventQuery::default()
        }
    )
    .is_empty());
}

pub(super) fn events_filter_by_kind_host_vm_severity(make: Factory<'_>) {
    let s = make(Limits::default());
    let evs = [
        event("host-suspect", "info", Some("h1"), None), // 1
        event("host-down", "warning", Some("h1"), None), // 2
        event("vm-restarted", "info", Some("h2"), Some("v1")), // 3
        event("self-defense", "alarm", None, None),      // 4
        event("vm-restarted", "info", Some("h1"), Some("v2")), // 5
        event("host-down", "warning", Some("h2"), None), // 6
    ];
    for e in &evs {
        ok(s.append_event(e), "append");
    }
    let q = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery::default();
        f(&mut q);
        list(&*s, q)
    };
    assert_eq!(q(|q| q.kind = Some("host-down".into())), vec![2, 6]);
    assert_eq!(
        q(|q| q.host = Some("h1".into())),
        vec![1, 2, 5],
        "events without a host never match a host filter"
    );
    assert_eq!(q(|q| q.vm = Some("v1".into())), vec![3]);
    assert_eq!(q(|q| q.severity = Some("alarm".into())), vec![4]);
    assert_eq!(
        q(|q| {
            q.kind = Some("vm-restarted".into());
            q.host = Some("h1".into());
        }),
        vec![5],
        "filters combine"
    );
    assert_eq!(
        q(|q| {
            q.host = Some("h1".into());
            q.after = 1;
            q.limit = Some(1);
        }),
        vec![2],
        "the limit counts matching events only"
    );
    assert!(q(|q| q.kind = Some("nothing".into())).is_empty());
}

pub(super) fn events_are_bounded(make: Factory<'_>) {
    let s = make(Limits {
        max_events: 3,
        ..Limits::default()
    });
    for _ in 0..5 {
        ok(
            s.append_event(&event("host-suspect", "info", None, None)),
            "append",
        );
    }
    assert_eq!(
        list(&*s, EventQuery::default()),
        vec![3, 4, 5],
        "only the last 3 are kept"
    );
    assert_eq!(
        ok(
            s.append_event(&event("x", "info", None, None)),
            "append after drop"
        ),
        6,
        "seqs are never reused"
    );
    assert_eq!(list(&*s, EventQuery::default()), vec![4, 5, 6]);
}

pub(super) fn zero_limits_keep_the_newest_entry(make: Factory<'_>) {
    let s = make(Limits {
        max_tasks: 0,
        max_events: 0,
    });
    for a in 1..=2 {
        ok(s.append_task(&task("v1", a)), "append task");
        ok(
            s.append_event(&event("x", "info", None, None)),
            "append event",
        );
    }
    assert_eq!(ids(&ok(s.list_tasks(None, 10), "tasks")), vec![2]);
    assert_eq!(list(&*s, EventQuery::default()), vec![2]);
    assert_eq!(ok(s.append_task(&task("v1", 3)), "append task"), 3);
}
