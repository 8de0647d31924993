// Command interop is the Go side of pg-jobqueue's interop suite (tests/interop):
// it uses go-jobqueue's public API only, against the database named by the
// POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB
// environment variables (as go-jobqueue's own tests do).
//
// Subcommands (each prints JSON lines on stdout):
//
//	work [-types a,b] [-threads N] [-poll 200ms] [-retry-delay 1h]
//	    run workers for these job types (none: only listen) until stdin closes, then FinishThreads;
//	    prints {"event":"ready"} once started, and one line per job_stopped and
//	    job_bundle_stopped event heard by its listeners
//	add -type T -n N [-payload JSON] [-max-retry R]   enqueue N jobs, print their ids
//	add-bundle -type B -job-type T -n N [-payload JSON] enqueue a bundle, print its id and job ids
//	reset -id ID | delete -id ID                       go-jobqueue's ResetJob / DeleteJob
//	get -id ID | get-bundle -id ID                      print the job / bundle as go-jobqueue reads it
//
// A job's handler records each run in public.interop_runs (job id, runner "go")
// and fails while the job's runs (by either language) are at most the payload's
// "fail_runs": the rule the Python handlers of the suite follow too.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/domonda/go-jobqueue"
	"github.com/domonda/go-jobqueue/jobworker"
	"github.com/domonda/go-jobqueue/jobworkerdb"
	"github.com/domonda/go-sqldb"
	"github.com/domonda/go-sqldb/db"
	"github.com/domonda/go-sqldb/pqconn"
	"github.com/domonda/go-types/nullable"
	"github.com/domonda/go-types/uu"
)

var stdout = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

// emit prints one JSON line; safe from any goroutine.
func emit(v any) {
	stdout.Lock()
	defer stdout.Unlock()
	if err := stdout.enc.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "interop: writing stdout:", err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "interop:", err)
	os.Exit(1)
}

func connect(ctx context.Context) {
	port, err := strconv.ParseUint(cmp.Or(os.Getenv("POSTGRES_PORT"), "5432"), 10, 16)
	if err != nil {
		fail(err)
	}
	config := &sqldb.Config{
		Driver:   "postgres",
		User:     cmp.Or(os.Getenv("POSTGRES_USER"), "postgres"),
		Password: os.Getenv("POSTGRES_PASSWORD"),
		Host:     cmp.Or(os.Getenv("POSTGRES_HOST"), "localhost"),
		Port:     uint16(port),
		Database: os.Getenv("POSTGRES_DB"),
		Extra:    map[string]string{"sslmode": "disable"},
		// database/sql opens connections without limit by default; the test server has 100.
		MaxOpenConns: 12,
		MaxIdleConns: 4,
	}
	conn, err := pqconn.Connect(ctx, config)
	if err != nil {
		fail(err)
	}
	db.SetConn(conn)
	if err := jobworkerdb.InitJobQueue(ctx); err != nil {
		fail(err)
	}
}

type runRule struct {
	FailRuns int `json:"fail_runs"`
}

// handle is the handler of every job type the worker serves.
func handle(ctx context.Context, job *jobqueue.Job) (any, error) {
	runs, err := db.QueryRowAs[int](ctx, `
		with run as (insert into public.interop_runs (job_id, runner) values ($1, 'go') returning 1)
		select count(*) + 1 from public.interop_runs where job_id = $1`, job.ID)
	if err != nil {
		return nil, err
	}
	var rule runRule
	_ = json.Unmarshal(job.Payload, &rule) // payloads that are not objects have no rule
	if runs <= rule.FailRuns {
		return nil, fmt.Errorf("go run %d of %d planned failures", runs, rule.FailRuns)
	}
	return map[string]any{"by": "go", "run": runs}, nil
}

func work(ctx context.Context, args []string) {
	flags := flag.NewFlagSet("work", flag.ExitOnError)
	types := flags.String("types", "", "comma-separated job types")
	threads := flags.Int("threads", 2, "worker threads")
	poll := flags.Duration("poll", 0, "also poll for jobs at this interval (0: notifications only)")
	retryDelay := flags.Duration("retry-delay", 0, "delay of a retry (0: due at once)")
	_ = flags.Parse(args)
	connect(ctx)
	var jobTypes []string
	if *types != "" {
		jobTypes = strings.Split(*types, ",")
	}
	for _, jobType := range jobTypes {
		jobworker.Register(jobType, handle)
		jobworker.RegisterScheduleRetry(jobworker.JobType(jobType), func(context.Context, *jobqueue.Job) (time.Time, error) {
			// A second early when "at once", so the database clock sees it due.
			return time.Now().Add(cmp.Or(*retryDelay, -time.Second)), nil
		})
	}
	jobqueue.AddJobStoppedListener(jobqueue.JobStoppedListenerFunc(func(job *jobqueue.Job, willRetry bool) {
		emit(map[string]any{"event": "job_stopped", "id": job.ID.String(), "type": job.Type, "willRetry": willRetry})
	}))
	jobqueue.AddJobBundleStoppedListener(jobqueue.JobBundleStoppedListenerFunc(func(bundle *jobqueue.JobBundle) {
		emit(map[string]any{"event": "job_bundle_stopped", "id": bundle.ID.String(), "type": bundle.Type,
			"numJobs": bundle.NumJobs, "numJobsStopped": bundle.NumJobsStopped})
	}))
	if len(jobTypes) > 0 { // else only listen
		if *poll > 0 {
			if err := jobworker.StartPollingAvailableJobs(*poll); err != nil {
				fail(err)
			}
		}
		if err := jobworker.StartThreads(ctx, *threads); err != nil {
			fail(err)
		}
	}
	emit(map[string]any{"event": "ready"})
	// Until the driver closes stdin.
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
	}
	if len(jobTypes) > 0 {
		jobworker.FinishThreads(ctx)
	}
	emit(map[string]any{"event": "finished"})
}

func payloadFlag(flags *flag.FlagSet) *string {
	return flags.String("payload", `{}`, "JSON payload")
}

func add(ctx context.Context, args []string) {
	flags := flag.NewFlagSet("add", flag.ExitOnError)
	jobType := flags.String("type", "", "job type")
	n := flags.Int("n", 1, "number of jobs")
	payload := payloadFlag(flags)
	maxRetry := flags.Int("max-retry", 0, "max retry count")
	_ = flags.Parse(args)
	connect(ctx)
	ids := make([]string, 0, *n)
	for range *n {
		job, err := jobqueue.NewJob(uu.NewID(ctx), *jobType, "go-interop", json.RawMessage(*payload), nullable.TimeNull, *maxRetry)
		if err != nil {
			fail(err)
		}
		if err := jobqueue.Add(ctx, job); err != nil {
			fail(err)
		}
		ids = append(ids, job.ID.String())
	}
	emit(map[string]any{"ids": ids})
}

func addBundle(ctx context.Context, args []string) {
	flags := flag.NewFlagSet("add-bundle", flag.ExitOnError)
	bundleType := flags.String("type", "", "bundle type")
	jobType := flags.String("job-type", "", "job type of its jobs")
	n := flags.Int("n", 1, "number of jobs")
	payload := payloadFlag(flags)
	_ = flags.Parse(args)
	connect(ctx)
	descs := make([]jobqueue.JobDesc, *n)
	for i := range descs {
		descs[i] = jobqueue.JobDesc{Type: *jobType, Payload: json.RawMessage(*payload), Origin: "go-interop"}
	}
	bundle, err := jobqueue.NewJobBundle(ctx, *bundleType, "go-interop", descs, nullable.TimeNull)
	if err != nil {
		fail(err)
	}
	if err := jobqueue.AddBundle(ctx, bundle); err != nil {
		fail(err)
	}
	ids := make([]string, len(bundle.Jobs))
	for i, job := range bundle.Jobs {
		ids[i] = job.ID.String()
	}
	emit(map[string]any{"id": bundle.ID.String(), "ids": ids})
}

func withID(ctx context.Context, name string, args []string, do func(context.Context, uu.ID) (any, error)) {
	flags := flag.NewFlagSet(name, flag.ExitOnError)
	idText := flags.String("id", "", "job or bundle id")
	_ = flags.Parse(args)
	id, err := uu.IDFromString(*idText)
	if err != nil {
		fail(err)
	}
	connect(ctx)
	out, err := do(ctx, id)
	if err != nil {
		fail(err)
	}
	emit(out)
}

func main() {
	ctx := context.Background()
	if len(os.Args) < 2 {
		fail(errors.New("usage: interop work|add|add-bundle|reset|delete|get|get-bundle [flags]"))
	}
	command, args := os.Args[1], os.Args[2:]
	switch command {
	case "work":
		work(ctx, args)
	case "add":
		add(ctx, args)
	case "add-bundle":
		addBundle(ctx, args)
	case "reset":
		withID(ctx, command, args, func(ctx context.Context, id uu.ID) (any, error) {
			return map[string]any{"reset": id.String()}, jobqueue.ResetJob(ctx, id)
		})
	case "delete":
		withID(ctx, command, args, func(ctx context.Context, id uu.ID) (any, error) {
			return map[string]any{"deleted": id.String()}, jobqueue.DeleteJob(ctx, id)
		})
	case "get":
		withID(ctx, command, args, func(ctx context.Context, id uu.ID) (any, error) {
			return jobqueue.GetJob(ctx, id)
		})
	case "get-bundle":
		withID(ctx, command, args, func(ctx context.Context, id uu.ID) (any, error) {
			return jobqueue.GetJobBundle(ctx, id)
		})
	default:
		fail(fmt.Errorf("unknown command %q", command))
	}
	if err := jobqueue.Close(); err != nil {
		fail(err)
	}
}
