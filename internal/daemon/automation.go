package daemon

import (
	"context"
	"fmt"

	"github.com/agentd/agentd/internal/scheduler"
	"github.com/agentd/agentd/internal/workflow"
)

// openAutomation builds the scheduler and the workflow engine (both are
// clients of the session manager) and mounts their routes.
func (d *daemon) openAutomation() error {
	var err error
	if d.sched, err = scheduler.New(scheduler.Options{
		DB: d.st.DB(), Config: d.cfg, Turns: d.mgr, Log: d.log.With("component", "scheduler"),
	}); err != nil {
		return fmt.Errorf("open scheduler: %w", err)
	}
	d.gw.Mount(scheduler.Routes(d.sched)...)
	d.sched.OnChange(d.gw.ResourceEvent)
	if d.flows, err = workflow.New(workflow.Options{
		DB: d.st.DB(), Turns: d.mgr, Tools: workflow.PoolTools{Pool: d.mcp, Registry: d.tools},
		Schedules: d.sched, Log: d.log.With("component", "workflow"),
	}); err != nil {
		return fmt.Errorf("open workflows: %w", err)
	}
	d.gw.Mount(workflow.Routes(d.flows)...)
	d.flows.OnChange(d.gw.ResourceEvent)
	return nil
}

// startAutomation closes what a previous process left running (runs are
// marked failed: agentd stopped), catches up missed task slots and arms
// every schedule.
func (d *daemon) startAutomation(ctx context.Context) error {
	if err := d.sched.Start(ctx); err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	if err := d.flows.Start(ctx); err != nil {
		return fmt.Errorf("start workflows: %w", err)
	}
	return nil
}

// waitAutomation waits for the task and workflow runs cut by shutdown to
// be recorded; safe on a partly opened daemon.
func (d *daemon) waitAutomation() {
	if d.flows != nil {
		d.flows.Wait()
	}
	if d.sched != nil {
		d.sched.Wait()
	}
}
