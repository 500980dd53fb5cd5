"""Agent calls and human decisions enter the audit trail from the plans' event record, in the statement that
writes the events (a trigger): atomic with them, and no extra round trip or ORM work on a step's hot path."""

from django.db import migrations

# The event types that are audited, and the keys of their data that are kept (audit/services.py: EVENT_ACTIONS).
SQL = """
CREATE FUNCTION audit_from_plan_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_auditentry (at, actor_id, actor_name, action, target, plan_id, status_code, ip,
                                  user_agent, data)
    SELECT e.created_at, e.actor_id, COALESCE(u.username, ''), e.type,
           CASE WHEN e.step_key <> '' THEN 'step ' || e.step_key ELSE 'plan' END, e.plan_id, NULL, NULL, '',
           jsonb_build_object('event_id', e.id) || COALESCE(
               (SELECT jsonb_object_agg(k, v) FROM jsonb_each(e.data) AS d(k, v)
                WHERE k IN ('agent', 'attempt', 'code', 'decision', 'worker')), '{}'::jsonb)
    FROM new_events e LEFT JOIN auth_user u ON u.id = e.actor_id
    WHERE e.type IN ('step.started', 'step.succeeded', 'step.failed', 'approval.decided', 'approval.voted',
                     'approval.timed_out', 'plan.cancelled');
    RETURN NULL;
END $$;
CREATE TRIGGER audit_from_plan_events AFTER INSERT ON orchestrator_planevent
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION audit_from_plan_events();
"""

REVERSE = """
DROP TRIGGER audit_from_plan_events ON orchestrator_planevent;
DROP FUNCTION audit_from_plan_events();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_audit_trail"),
        ("orchestrator", "0009_step_counters"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunSQL(SQL, REVERSE)]
