package mssql

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/chatdr/chatdr/sim/mssql/tds"
	bolt "go.etcd.io/bbolt"
)

// SQL Server Agent: a state of the instance (running or stopped, durable),
// a session row in msdb.dbo.syssessions per start, and a scheduler that
// runs the enabled jobs on their enabled schedules, one run at a time per
// job, recording sysjobactivity and sysjobhistory. The only job steps it
// knows are the log-shipping ones (sqllogship.exe -Backup|-Copy|-Restore
// <id>), which it runs in the engine (logship_jobs.go).

// AgentProgramName is the program_name of SQL Server Agent's session in
// sys.dm_exec_sessions and sysprocesses while it runs.
const AgentProgramName = "SQLAgent - Generic Refresher"

// agentSessionID is the session id shown for SQL Server Agent's session.
const agentSessionID = 50

var bucketAgent = []byte("agent")

// agent is the SQL Server Agent state; guarded by Instance.mu.
type agent struct {
	running bool
	session int64
	started time.Time
	runs    map[tds.GUID]*jobRun
	next    map[tds.GUID]time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	tick    time.Duration
}

type jobRun struct {
	cancel context.CancelFunc
	user   string
}

// openAgent loads the Agent state and starts the scheduler; Agent starts
// with the instance unless it was stopped (xp_servicecontrol N'STOP').
func (in *Instance) openAgent() error {
	a := &agent{runs: map[tds.GUID]*jobRun{}, next: map[tds.GUID]time.Time{}, stop: make(chan struct{}), tick: in.cfg.AgentTick}
	if a.tick <= 0 {
		a.tick = 100 * time.Millisecond
	}
	in.agent = a
	stopped := false
	if err := in.store.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketAgent); b != nil {
			stopped = string(b.Get([]byte("state"))) == "stopped"
		}
		return nil
	}); err != nil {
		return err
	}
	if !stopped {
		in.mu.Lock()
		err := in.agentStartLocked()
		in.mu.Unlock()
		if err != nil {
			return err
		}
	}
	a.wg.Add(1)
	go in.agentLoop()
	return nil
}

func (in *Instance) saveAgentState(state string) error {
	return in.commit(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAgent)
		if err != nil {
			return err
		}
		return b.Put([]byte("state"), []byte(state))
	})
}

// agentStartLocked starts Agent: a new syssessions row and a
// sysjobactivity row per job for it.
func (in *Instance) agentStartLocked() error {
	a := in.agent
	now := in.cfg.Now()
	if _, err := in.q(`INSERT INTO dbo.syssessions (agent_start_date) VALUES (@d)`, "@d", now); err != nil {
		return err
	}
	rows, err := in.q(`SELECT MAX(session_id) FROM dbo.syssessions`)
	if err != nil {
		return err
	}
	a.session = asInt(rows[0][0])
	jobs, err := in.q(`SELECT job_id FROM dbo.sysjobs`)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if _, err := in.q(`INSERT INTO dbo.sysjobactivity (session_id, job_id) VALUES (@s, @j)`, "@s", a.session, "@j", j[0]); err != nil {
			return err
		}
	}
	a.running, a.started = true, now
	a.next = map[tds.GUID]time.Time{}
	return nil
}

func (in *Instance) agentStopLocked() {
	a := in.agent
	a.running = false
	for _, r := range a.runs {
		r.cancel()
	}
}

// closeAgent stops the scheduler and the running jobs and waits for them.
func (in *Instance) closeAgent() {
	a := in.agent
	if a == nil {
		return
	}
	in.mu.Lock()
	for _, r := range a.runs {
		r.cancel()
	}
	in.mu.Unlock()
	close(a.stop)
	a.wg.Wait()
}

// AgentRunning reports whether SQL Server Agent runs.
func (in *Instance) AgentRunning() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.agent != nil && in.agent.running
}

func (in *Instance) agentLoop() {
	a := in.agent
	defer a.wg.Done()
	t := time.NewTicker(a.tick)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		in.mu.Lock()
		if !in.closed && a.running {
			if err := in.scheduleLocked(); err != nil {
				in.log.Warn("SQL Server Agent scheduler", "err", err)
			}
		}
		in.mu.Unlock()
	}
}

// scheduleLocked starts every due job.
func (in *Instance) scheduleLocked() error {
	a := in.agent
	rows, err := in.q(`SELECT j.job_id, j.enabled, s.enabled, s.freq_type, s.freq_subday_type, s.freq_subday_interval,
		s.active_start_time, s.active_end_time, s.schedule_id
		FROM dbo.sysjobs j JOIN dbo.sysjobschedules js ON js.job_id = j.job_id JOIN dbo.sysschedules s ON s.schedule_id = js.schedule_id`)
	if err != nil {
		return err
	}
	now := in.cfg.Now()
	due := map[tds.GUID]bool{}
	seen := map[tds.GUID]bool{}
	for _, r := range rows {
		id, _ := r[0].(tds.GUID)
		if asInt(r[1]) == 0 || asInt(r[2]) == 0 {
			continue
		}
		key := id
		key[15] ^= byte(asInt(r[8])) // one slot per (job, schedule)
		seen[key] = true
		sc := schedule{freqType: asInt(r[3]), subType: asInt(r[4]), subInterval: asInt(r[5]), start: asInt(r[6]), end: asInt(r[7])}
		next, ok := a.next[key]
		switch {
		case !ok:
			next = sc.nextAfter(now)
		case !now.Before(next):
			due[id] = true
			next = sc.nextAfter(now)
		default:
			continue
		}
		a.next[key] = next
		if next.Before(now.AddDate(50, 0, 0)) {
			if _, err := in.q(`UPDATE dbo.sysjobschedules SET next_run_date = @d, next_run_time = @t WHERE job_id = @j AND schedule_id = @s`,
				"@d", dateInt(next), "@t", timeInt(next), "@j", id, "@s", r[8]); err != nil {
				return err
			}
		}
	}
	for k := range a.next {
		if !seen[k] {
			delete(a.next, k)
		}
	}
	for id := range due {
		if _, busy := a.runs[id]; busy {
			continue
		}
		if err := in.startJobLocked(id, "SCHEDULER", "sa"); err != nil {
			in.log.Warn("start job", "job", id.String(), "err", err)
		}
	}
	return nil
}

// schedule is a sysschedules row the scheduler understands: freq_type 4
// (daily) with freq_subday_type 1 (once at active_start_time), 2 (every n
// seconds), 4 (minutes) or 8 (hours) between active_start_time and
// active_end_time. Other freq_types never fire.
type schedule struct {
	freqType, subType, subInterval, start, end int64
}

func hhmmss(v int64) time.Duration {
	return time.Duration(v/10000)*time.Hour + time.Duration(v/100%100)*time.Minute + time.Duration(v%100)*time.Second
}

func (s schedule) nextAfter(after time.Time) time.Time {
	if s.freqType != 4 {
		return after.AddDate(100, 0, 0)
	}
	day := time.Date(after.Year(), after.Month(), after.Day(), 0, 0, 0, 0, after.Location())
	for range 3 {
		start, end := day.Add(hhmmss(s.start)), day.Add(hhmmss(s.end))
		var step time.Duration
		switch s.subType {
		case 2:
			step = time.Duration(s.subInterval) * time.Second
		case 4:
			step = time.Duration(s.subInterval) * time.Minute
		case 8:
			step = time.Duration(s.subInterval) * time.Hour
		}
		if step <= 0 {
			if start.After(after) {
				return start
			}
		} else {
			t := start
			if !after.Before(start) {
				k := after.Sub(start)/step + 1
				t = start.Add(k * step)
			}
			if !t.After(end) {
				return t
			}
		}
		day = day.AddDate(0, 0, 1)
	}
	return after.AddDate(100, 0, 0)
}

// jobInfo is a job's name and first step.
type jobInfo struct {
	id      tds.GUID
	name    string
	enabled bool
	step    string
	command string
}

func (in *Instance) findJob(id tds.GUID, byID bool, name string) (*jobInfo, error) {
	var rows [][]any
	var err error
	if byID {
		rows, err = in.q(`SELECT j.job_id, j.name, j.enabled, s.step_name, s.command FROM dbo.sysjobs j
			LEFT JOIN dbo.sysjobsteps s ON s.job_id = j.job_id AND s.step_id = j.start_step_id WHERE j.job_id = @id`, "@id", id)
	} else {
		rows, err = in.q(`SELECT j.job_id, j.name, j.enabled, s.step_name, s.command FROM dbo.sysjobs j
			LEFT JOIN dbo.sysjobsteps s ON s.job_id = j.job_id AND s.step_id = j.start_step_id WHERE j.name = @n`, "@n", name)
	}
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	r := rows[0]
	j := &jobInfo{name: r[1].(string), enabled: asInt(r[2]) != 0}
	j.id, _ = r[0].(tds.GUID)
	j.step, _ = r[3].(string)
	j.command, _ = r[4].(string)
	return j, nil
}

// jobArg resolves @job_id / @job_name (14262 when absent, 14294 when
// neither or both are given).
func (c *procCall) job() (*jobInfo, error) {
	in := c.x.in
	id, hasID, err := c.guid("job_id")
	if err != nil {
		return nil, err
	}
	hasName := !c.isNull("job_name")
	if hasID == hasName {
		return nil, sqlErr(14294)
	}
	j, err := in.findJob(id, hasID, c.str("job_name"))
	if err != nil {
		return nil, err
	}
	if j == nil {
		if hasID {
			return nil, sqlErr(14262, "@job_id", strings.ToUpper(id.String()))
		}
		return nil, sqlErr(14262, "@job_name", c.str("job_name"))
	}
	return j, nil
}

// createJob adds a disabled job with one CmdExec step (sp_add_job +
// sp_add_jobstep + sp_add_jobserver, as the log-shipping procedures do).
func (x *execCtx) createJob(name, desc, stepName, command string) (tds.GUID, error) {
	in := x.in
	if rows, err := in.q(`SELECT job_id FROM dbo.sysjobs WHERE name = @n`, "@n", name); err != nil {
		return tds.GUID{}, err
	} else if len(rows) > 0 {
		return tds.GUID{}, sqlErr(14261, "@job_name", name)
	}
	id := newGUID()
	now := in.cfg.Now()
	if _, err := in.q(`INSERT INTO dbo.sysjobs (job_id, originating_server_id, name, enabled, description, start_step_id, category_id,
		owner_sid, date_created, date_modified, version_number) VALUES (@id, 0, @n, 0, @desc, 1, @cat, 0x01, @now, @now, 1)`,
		"@id", id, "@n", name, "@desc", desc, "@cat", int64(lsCategory), "@now", now); err != nil {
		return tds.GUID{}, err
	}
	if _, err := in.q(`INSERT INTO dbo.sysjobsteps (job_id, step_id, step_name, subsystem, command, database_name, last_run_outcome,
		last_run_duration, last_run_date, last_run_time) VALUES (@id, 1, @sn, N'CmdExec', @cmd, N'master', 0, 0, 0, 0)`,
		"@id", id, "@sn", stepName, "@cmd", command); err != nil {
		return tds.GUID{}, err
	}
	if in.agent != nil && in.agent.running {
		if _, err := in.q(`INSERT INTO dbo.sysjobactivity (session_id, job_id) VALUES (@s, @j)`, "@s", in.agent.session, "@j", id); err != nil {
			return tds.GUID{}, err
		}
	}
	return id, nil
}

// deleteJob is sp_delete_job: the job, its steps, schedules (unused ones),
// activity and history; a running job is stopped first.
func (x *execCtx) deleteJob(id tds.GUID) error {
	in := x.in
	if r, ok := in.agent.runs[id]; ok {
		r.cancel()
	}
	scheds, err := in.q(`SELECT schedule_id FROM dbo.sysjobschedules WHERE job_id = @id`, "@id", id)
	if err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM dbo.sysjobs WHERE job_id = @id`, `DELETE FROM dbo.sysjobsteps WHERE job_id = @id`,
		`DELETE FROM dbo.sysjobschedules WHERE job_id = @id`, `DELETE FROM dbo.sysjobactivity WHERE job_id = @id`,
		`DELETE FROM dbo.sysjobhistory WHERE job_id = @id`,
	} {
		if _, err := in.q(q, "@id", id); err != nil {
			return err
		}
	}
	for _, s := range scheds {
		if _, err := in.q(`DELETE FROM dbo.sysschedules WHERE schedule_id = @s AND NOT EXISTS (SELECT 1 FROM dbo.sysjobschedules WHERE schedule_id = @s)`, "@s", s[0]); err != nil {
			return err
		}
	}
	return nil
}

func dateInt(t time.Time) int64 { return int64(t.Year()*10000 + int(t.Month())*100 + t.Day()) }
func timeInt(t time.Time) int64 { return int64(t.Hour()*10000 + t.Minute()*100 + t.Second()) }

// jobAddSchedule is msdb.dbo.sp_add_jobschedule.
func (x *execCtx) jobAddSchedule(c *procCall) (int32, error) {
	j, err := c.job()
	if err != nil {
		return 1, err
	}
	sid, err := x.addSchedule(c, c.str("name"))
	if err != nil {
		return 1, err
	}
	if err := x.attachSchedule(sid, j.id); err != nil {
		return 1, err
	}
	return 0, nil
}

// jobAddSharedSchedule is msdb.dbo.sp_add_schedule.
func (x *execCtx) jobAddSharedSchedule(c *procCall) (int32, error) {
	if _, err := x.addSchedule(c, c.str("schedule_name")); err != nil {
		return 1, err
	}
	return 0, nil
}

// jobAttachSchedule is msdb.dbo.sp_attach_schedule.
func (x *execCtx) jobAttachSchedule(c *procCall) (int32, error) {
	j, err := c.job()
	if err != nil {
		return 1, err
	}
	var rows [][]any
	if !c.isNull("schedule_id") {
		rows, err = x.in.q(`SELECT schedule_id FROM dbo.sysschedules WHERE schedule_id = @s`, "@s", c.num("schedule_id", 0))
	} else if !c.isNull("schedule_name") {
		rows, err = x.in.q(`SELECT schedule_id FROM dbo.sysschedules WHERE name = @s`, "@s", c.str("schedule_name"))
	} else {
		return 1, sqlErr(14273)
	}
	if err != nil {
		return 1, err
	}
	if len(rows) == 0 {
		if !c.isNull("schedule_id") {
			return 1, sqlErr(14262, "@schedule_id", fmt.Sprint(c.num("schedule_id", 0)))
		}
		return 1, sqlErr(14262, "@schedule_name", c.str("schedule_name"))
	}
	if err := x.attachSchedule(asInt(rows[0][0]), j.id); err != nil {
		return 1, err
	}
	return 0, nil
}

func (x *execCtx) attachSchedule(sid int64, job tds.GUID) error {
	_, err := x.in.q(`INSERT INTO dbo.sysjobschedules (schedule_id, job_id, next_run_date, next_run_time) VALUES (@s, @j, 0, 0)`,
		"@s", sid, "@j", job)
	return err
}

// addSchedule validates and inserts a sysschedules row, setting the
// OUTPUT parameters @schedule_id and @schedule_uid.
func (x *execCtx) addSchedule(c *procCall, name string) (int64, error) {
	in := x.in
	freqType := c.num("freq_type", 1)
	switch freqType {
	case 1, 4, 8, 16, 32, 64, 128:
	default:
		return 0, sqlErr(14266, "@freq_type", "1, 4, 8, 16, 32, 64, 128")
	}
	subType := c.num("freq_subday_type", 0)
	subInterval := c.num("freq_subday_interval", 0)
	if freqType == 4 {
		if iv := c.num("freq_interval", 0); iv < 1 {
			return 0, sqlErr(14266, "@freq_interval", "1..")
		}
		switch subType {
		case 1, 2, 4, 8:
		default:
			return 0, sqlErr(14266, "@freq_subday_type", "0x1, 0x2, 0x4, 0x8")
		}
		if subType != 1 && subInterval < 1 {
			return 0, sqlErr(14266, "@freq_subday_interval", "1..")
		}
		// SQL Server's documentation says a seconds interval "should be
		// longer than 10 seconds" (the SSMS dialog enforces it); shorter
		// ones are accepted here (tests run 1-2 s schedules).
	}
	now := in.cfg.Now()
	uid := newGUID()
	if _, err := in.q(`INSERT INTO dbo.sysschedules (schedule_uid, originating_server_id, name, owner_sid, enabled, freq_type, freq_interval,
		freq_subday_type, freq_subday_interval, freq_relative_interval, freq_recurrence_factor, active_start_date, active_end_date,
		active_start_time, active_end_time, date_created, date_modified, version_number)
		VALUES (@uid, 0, @n, 0x01, @en, @ft, @fi, @st, @si, @fri, @frf, @asd, @aed, @ast, @aet, @now, @now, 1)`,
		"@uid", uid, "@n", name, "@en", c.num("enabled", 1), "@ft", freqType, "@fi", c.num("freq_interval", 0),
		"@st", subType, "@si", subInterval, "@fri", c.num("freq_relative_interval", 0), "@frf", c.num("freq_recurrence_factor", 0),
		"@asd", c.num("active_start_date", dateInt(now)), "@aed", c.num("active_end_date", 99991231),
		"@ast", c.num("active_start_time", 0), "@aet", c.num("active_end_time", 235959), "@now", now); err != nil {
		return 0, err
	}
	rows, err := in.q(`SELECT MAX(schedule_id) FROM dbo.sysschedules`)
	if err != nil {
		return 0, err
	}
	sid := asInt(rows[0][0])
	c.out("schedule_id", sid)
	c.out("schedule_uid", uid)
	return sid, nil
}

// jobUpdate is msdb.dbo.sp_update_job (@enabled, @new_name, @description).
func (x *execCtx) jobUpdate(c *procCall) (int32, error) {
	in := x.in
	j, err := c.job()
	if err != nil {
		return 1, err
	}
	now := in.cfg.Now()
	if !c.isNull("enabled") {
		en := c.num("enabled", 1)
		if en != 0 && en != 1 {
			return 1, sqlErr(14266, "@enabled", "0, 1")
		}
		if _, err := in.q(`UPDATE dbo.sysjobs SET enabled = @e, date_modified = @now, version_number = version_number + 1 WHERE job_id = @id`,
			"@e", en, "@now", now, "@id", j.id); err != nil {
			return 1, err
		}
	}
	if !c.isNull("new_name") {
		if _, err := in.q(`UPDATE dbo.sysjobs SET name = @n, date_modified = @now WHERE job_id = @id`, "@n", c.str("new_name"), "@now", now, "@id", j.id); err != nil {
			return 1, err
		}
	}
	if !c.isNull("description") {
		if _, err := in.q(`UPDATE dbo.sysjobs SET description = @n, date_modified = @now WHERE job_id = @id`, "@n", c.str("description"), "@now", now, "@id", j.id); err != nil {
			return 1, err
		}
	}
	return 0, nil
}

func (x *execCtx) jobStart(c *procCall) (int32, error) {
	in := x.in
	j, err := c.job()
	if err != nil {
		return 1, err
	}
	if !in.agent.running {
		return 1, sqlErr(22022, "SQLServerAgent is not currently running so it cannot be notified of this action.")
	}
	if r, busy := in.agent.runs[j.id]; busy {
		return 1, sqlErr(22022, fmt.Sprintf("SQLServerAgent Error: Request to run job %s (from User %s) refused because the job is already running from a request by User %s.", j.name, x.login, r.user))
	}
	if err := in.startJobLocked(j.id, "USER", x.login); err != nil {
		return 1, err
	}
	c.info(&tds.Error{Number: 14243, State: 1, Class: 0, Message: fmt.Sprintf("Job '%s' started successfully.", j.name)})
	return 0, nil
}

func (x *execCtx) jobStop(c *procCall) (int32, error) {
	in := x.in
	j, err := c.job()
	if err != nil {
		return 1, err
	}
	r, busy := in.agent.runs[j.id]
	if !in.agent.running || !busy {
		return 1, sqlErr(22022, fmt.Sprintf("SQLServerAgent Error: Request to stop job %s (from User %s) refused because the job is not currently running.", j.name, x.login))
	}
	r.cancel()
	c.info(&tds.Error{Number: 0, State: 1, Class: 0, Message: fmt.Sprintf("Job '%s' stopped successfully.", j.name)})
	return 0, nil
}

func (x *execCtx) jobDelete(c *procCall) (int32, error) {
	j, err := c.job()
	if err != nil {
		return 1, err
	}
	if err := x.deleteJob(j.id); err != nil {
		return 1, err
	}
	return 0, nil
}

// jobHelp is msdb.dbo.sp_help_job for one job: a subset of its first
// result set (job_id, name, enabled, current_execution_status: 1
// executing, 4 idle; last_run_outcome).
func (x *execCtx) jobHelp(c *procCall) (int32, error) {
	in := x.in
	var jobs []*jobInfo
	if c.isNull("job_id") && c.isNull("job_name") {
		rows, err := in.q(`SELECT job_id FROM dbo.sysjobs ORDER BY name`)
		if err != nil {
			return 1, err
		}
		for _, r := range rows {
			j, err := in.findJob(r[0].(tds.GUID), true, "")
			if err != nil {
				return 1, err
			}
			jobs = append(jobs, j)
		}
	} else {
		j, err := c.job()
		if err != nil {
			return 1, err
		}
		jobs = append(jobs, j)
	}
	var out [][]any
	for _, j := range jobs {
		status := int64(4)
		if _, busy := in.agent.runs[j.id]; busy {
			status = 1
		}
		oc, err := in.q(`SELECT last_run_outcome FROM dbo.sysjobsteps WHERE job_id = @id AND step_id = 1`, "@id", j.id)
		if err != nil {
			return 1, err
		}
		var outcome any = int64(5)
		if len(oc) > 0 {
			outcome = oc[0][0]
		}
		en := int64(0)
		if j.enabled {
			en = 1
		}
		out = append(out, []any{j.id, j.name, en, status, outcome})
	}
	c.result([]resultCol{{"job_id", typeGUID}, {"name", typeSysname}, {"enabled", typeTinyInt},
		{"current_execution_status", typeInt}, {"last_run_outcome", typeInt}}, out)
	return 0, nil
}

func (x *execCtx) jobHelpActivity(c *procCall) (int32, error) {
	rows, err := x.in.q(`SELECT a.session_id, a.job_id, j.name AS job_name, a.run_requested_date, a.run_requested_source,
		a.start_execution_date, a.last_executed_step_id, a.stop_execution_date, a.job_history_id
		FROM dbo.sysjobactivity a JOIN dbo.sysjobs j ON j.job_id = a.job_id
		WHERE a.session_id = @s ORDER BY j.name`, "@s", x.in.agent.session)
	if err != nil {
		return 1, err
	}
	c.result(inferCols([]string{"session_id", "job_id", "job_name", "run_requested_date", "run_requested_source",
		"start_execution_date", "last_executed_step_id", "stop_execution_date", "job_history_id"}, rows), rows)
	return 0, nil
}

// serviceControl is master.dbo.xp_servicecontrol for SQL Server Agent
// (SQLServerAgent, or SQLAgent$<instance>).
func (x *execCtx) serviceControl(c *procCall) (int32, error) {
	in := x.in
	action, service := strings.ToUpper(c.str("action")), strings.ToUpper(c.str("service"))
	if service != "SQLSERVERAGENT" && !strings.HasPrefix(service, "SQLAGENT$") {
		return 1, sqlErr(22003, "xp_servicecontrol() returned error 1060, 'The specified service does not exist as an installed service.'")
	}
	a := in.agent
	state := func() string {
		if a.running {
			return "Running."
		}
		return "Stopped."
	}
	switch action {
	case "QUERYSTATE":
		c.result([]resultCol{{"Current Service State", nvarchar(128)}}, [][]any{{state()}})
		return 0, nil
	case "START":
		if a.running {
			return 1, sqlErr(22003, "StartService() returned error 1056, 'An instance of the service is already running.'")
		}
		if err := in.saveAgentState("running"); err != nil {
			return 1, err
		}
		if err := in.agentStartLocked(); err != nil {
			return 1, err
		}
		c.info(&tds.Error{Number: 0, State: 1, Class: 0, Message: "Service Started."})
		return 0, nil
	case "STOP":
		if !a.running {
			return 1, sqlErr(22003, "ControlService() returned error 1062, 'The service has not been started.'")
		}
		if err := in.saveAgentState("stopped"); err != nil {
			return 1, err
		}
		in.agentStopLocked()
		c.info(&tds.Error{Number: 0, State: 1, Class: 0, Message: "Service Stopped."})
		return 0, nil
	}
	return 1, sqlErr(22003, "xp_servicecontrol() returned error 87, 'The parameter is incorrect.'")
}

// chatdrFault is master.dbo.sp_chatdr_fault, a simulator-only procedure:
// fault injection from outside the process.
func (x *execCtx) chatdrFault(c *procCall) (int32, error) {
	in := x.in
	switch strings.ToLower(c.str("action")) {
	case "add":
		f := Fault{Delay: time.Duration(c.num("delay_ms", 0)) * time.Millisecond, Count: int(c.num("count", 1))}
		if !c.isNull("match") {
			re, err := regexp.Compile(c.str("match"))
			if err != nil {
				return 1, &tds.Error{Number: 50000, State: 1, Class: 16, Message: "sp_chatdr_fault: bad @match: " + err.Error()}
			}
			f.Match = re
		}
		if n := c.num("error", 0); n != 0 {
			if def, ok := msgTable[int32(n)]; ok && !strings.Contains(def.text, "%") {
				f.Err = sqlErr(int32(n))
			} else {
				f.Err = &tds.Error{Number: int32(n), State: 1, Class: 16, Message: fmt.Sprintf("Injected fault (error %d).", n)}
			}
		}
		in.InjectFault(f)
	case "clear":
		in.faults.mu.Lock()
		in.faults.list = nil
		in.faults.mu.Unlock()
	case "share_unreadable":
		in.SetShareReadable(false)
	case "share_readable":
		in.SetShareReadable(true)
	default:
		return 1, &tds.Error{Number: 50000, State: 1, Class: 16, Message: "sp_chatdr_fault: @action must be add, clear, share_unreadable or share_readable"}
	}
	return 0, nil
}
