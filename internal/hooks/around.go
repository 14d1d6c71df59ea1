package hooks

import (
	"context"
	"fmt"
	"time"
)

// Event is a moment a notification is sent for.
type Event int

const (
	Start Event = iota
	Success
	Failure
)

func (e Event) String() string {
	return [...]string{"start", "success", "failure"}[e]
}

// Notifier sends a notification; a failure to notify is reported, never
// the backup's failure.
type Notifier interface {
	Notify(ctx context.Context, ev Event, body string) error
}

// Plan is what runs around one backup.
type Plan struct {
	Shell   Shell
	Before  []string
	After   []string
	Failure []string
	Notify  Notifier // nil: none
	// Log receives one line per hook run and per notification problem.
	Log func(format string, args ...any)
}

// AfterGrace bounds the after and failure hooks of a backup that was
// interrupted: they still run (a service stopped before must be started
// again), but the process is about to end.
const AfterGrace = 30 * time.Second

// Around runs work between the hooks: notify start, the before hooks (the
// first failure skips work and the rest), work, then the after hooks
// (always, once the before hooks ran), then later (if not nil: work that
// must not keep the after hooks waiting, such as copies; it is told how
// work ended), the failure hooks if anything failed, and notify success or
// failure. work returns a summary for the notification. The error is the
// first failure: a before hook, the work, an after hook, or later.
func (p Plan) Around(ctx context.Context, work func(context.Context) (string, error), later func(context.Context, error) error) error {
	logf := p.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	notify := func(ev Event, body string) {
		if p.Notify == nil {
			return
		}
		// A notification is worth sending even when interrupted: it
		// says the backup did not happen.
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AfterGrace)
		defer cancel()
		if err := p.Notify.Notify(nctx, ev, body); err != nil {
			logf("warning: notification (%s) failed: %v", ev, err)
		}
	}
	notify(Start, "")
	var err error
	for _, line := range p.Before {
		logf("hook before: %s", line)
		if err = p.Shell.Run(ctx, line, Env("RUNUP_HOOK", "before")...); err != nil {
			err = fmt.Errorf("before hook %w: the backup was skipped", err)
			break
		}
	}
	summary := ""
	if err == nil {
		summary, err = work(ctx)
	}
	// After and failure hooks run even when the context ended.
	late, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if ctx.Err() != nil {
		late, cancel = context.WithTimeout(late, AfterGrace)
		defer cancel()
	}
	result := "success"
	errText := ""
	if err != nil {
		result, errText = "failure", err.Error()
	}
	for _, line := range p.After {
		logf("hook after: %s", line)
		if aerr := p.Shell.Run(late, line, Env("RUNUP_HOOK", "after", "RUNUP_RESULT", result, "RUNUP_ERROR", errText)...); aerr != nil {
			aerr = fmt.Errorf("after hook %w", aerr)
			logf("%v", aerr)
			if err == nil {
				err = aerr
				errText = err.Error()
			}
		}
	}
	if later != nil && ctx.Err() == nil {
		if lerr := later(ctx, err); lerr != nil && err == nil {
			err = lerr
			errText = err.Error()
		}
	}
	if err != nil {
		for _, line := range p.Failure {
			logf("hook failure: %s", line)
			if ferr := p.Shell.Run(late, line, Env("RUNUP_HOOK", "failure", "RUNUP_RESULT", "failure", "RUNUP_ERROR", errText)...); ferr != nil {
				logf("failure hook %v", ferr)
			}
		}
		notify(Failure, errText)
		return err
	}
	notify(Success, summary)
	return nil
}
