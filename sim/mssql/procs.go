package mssql

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// System procedures beyond sp_who: the log-shipping family (master), the
// SQL Server Agent job procedures (msdb), xp_servicecontrol and the
// simulator-only sp_chatdr_fault. Their arguments are bound like SQL
// Server's: by name (@name = value) or by position, with defaults; an
// unknown name is 8145, a missing required one 201, too many 8144.

// procParam is a declared parameter of a system procedure.
type procParam struct {
	name     string // without '@', lower case
	required bool
	output   bool
	t        colType // type of an OUTPUT parameter's return value
}

// procCall is a bound call: argument values by lower-case name.
type procCall struct {
	x      *execCtx
	name   string // the procedure's canonical name, e.g. sp_add_jobschedule
	vals   map[string]any
	given  map[string]bool
	outs   []tds.ReturnValue
	args   map[string]procArg // output arguments by name
	infos  []*tds.Error
	cols   []resultCol
	rows   [][]any
	hasSet bool
}

func (c *procCall) str(n string) string {
	v, _ := coerce(c.vals[n], typeNVarMax)
	s, _ := v.(string)
	return s
}

func (c *procCall) num(n string, def int64) int64 {
	if !c.given[n] || c.vals[n] == nil {
		return def
	}
	v, err := coerce(c.vals[n], typeBigInt)
	if err != nil {
		return def
	}
	i, _ := v.(int64)
	return i
}

func (c *procCall) isNull(n string) bool { return !c.given[n] || c.vals[n] == nil }

// guid reads a uniqueidentifier argument.
func (c *procCall) guid(n string) (tds.GUID, bool, error) {
	if c.isNull(n) {
		return tds.GUID{}, false, nil
	}
	v, err := coerce(c.vals[n], typeGUID)
	if err != nil {
		return tds.GUID{}, false, err
	}
	g, _ := v.(tds.GUID)
	return g, true, nil
}

// out sets an OUTPUT parameter's value (sent only if the caller passed it
// as OUTPUT).
func (c *procCall) out(n string, v any) {
	a, ok := c.args[n]
	if !ok || !a.Output {
		return
	}
	var t colType
	for _, p := range procSpecs[c.name] {
		if p.name == n {
			t = p.t
		}
	}
	c.outs = append(c.outs, tds.ReturnValue{Ordinal: a.Ordinal, Name: "@" + n, Type: t.tdsType(), Value: v})
}

func (c *procCall) info(m *tds.Error) { c.infos = append(c.infos, m) }

func (c *procCall) result(cols []resultCol, rows [][]any) {
	c.cols, c.rows, c.hasSet = cols, rows, true
}

var (
	pReq  = func(n string) procParam { return procParam{name: n, required: true} }
	pOpt  = func(n string) procParam { return procParam{name: n} }
	pOutG = func(n string) procParam { return procParam{name: n, output: true, t: typeGUID} }
	pOutI = func(n string) procParam { return procParam{name: n, output: true, t: typeInt} }
)

// procSpecs declares the parameters of each system procedure in order.
var procSpecs = map[string][]procParam{
	"sp_add_log_shipping_primary_database": {pReq("database"), pReq("backup_directory"), pReq("backup_share"),
		pReq("backup_job_name"), pOpt("backup_retention_period"), pOpt("monitor_server"), pOpt("monitor_server_security_mode"),
		pOpt("monitor_server_login"), pOpt("monitor_server_password"), pOpt("backup_threshold"), pOpt("threshold_alert"),
		pOpt("threshold_alert_enabled"), pOpt("history_retention_period"), pOutG("backup_job_id"), pOutG("primary_id"),
		pOpt("overwrite"), pOpt("ignoreremotemonitor"), pOpt("backup_compression")},
	"sp_add_log_shipping_primary_secondary":    {pReq("primary_database"), pReq("secondary_server"), pReq("secondary_database"), pOpt("overwrite")},
	"sp_delete_log_shipping_primary_secondary": {pReq("primary_database"), pReq("secondary_server"), pReq("secondary_database")},
	"sp_delete_log_shipping_primary_database":  {pReq("database"), pOpt("ignoreremotemonitor")},
	"sp_change_log_shipping_primary_database": {pReq("database"), pOpt("backup_directory"), pOpt("backup_share"),
		pOpt("backup_retention_period"), pOpt("monitor_server_security_mode"), pOpt("monitor_server_login"),
		pOpt("monitor_server_password"), pOpt("backup_threshold"), pOpt("threshold_alert"), pOpt("threshold_alert_enabled"),
		pOpt("history_retention_period"), pOpt("ignoreremotemonitor"), pOpt("backup_compression")},
	"sp_add_log_shipping_secondary_primary": {pReq("primary_server"), pReq("primary_database"), pReq("backup_source_directory"),
		pReq("backup_destination_directory"), pReq("copy_job_name"), pReq("restore_job_name"), pOpt("file_retention_period"),
		pOpt("monitor_server"), pOpt("monitor_server_security_mode"), pOpt("monitor_server_login"), pOpt("monitor_server_password"),
		pOutG("copy_job_id"), pOutG("restore_job_id"), pOutG("secondary_id"), pOpt("overwrite"), pOpt("ignoreremotemonitor")},
	"sp_add_log_shipping_secondary_database": {pReq("secondary_database"), pReq("primary_server"), pReq("primary_database"),
		pOpt("restore_delay"), pOpt("restore_all"), pOpt("restore_mode"), pOpt("disconnect_users"), pOpt("block_size"),
		pOpt("buffer_count"), pOpt("max_transfer_size"), pOpt("restore_threshold"), pOpt("threshold_alert"),
		pOpt("threshold_alert_enabled"), pOpt("history_retention_period"), pOpt("overwrite"), pOpt("ignoreremotemonitor")},
	"sp_change_log_shipping_secondary_database": {pReq("secondary_database"), pOpt("restore_delay"), pOpt("restore_all"),
		pOpt("restore_mode"), pOpt("disconnect_users"), pOpt("block_size"), pOpt("buffer_count"), pOpt("max_transfer_size"),
		pOpt("restore_threshold"), pOpt("threshold_alert"), pOpt("threshold_alert_enabled"), pOpt("history_retention_period")},
	"sp_change_log_shipping_secondary_primary": {pReq("primary_server"), pReq("primary_database"), pOpt("backup_source_directory"),
		pOpt("backup_destination_directory"), pOpt("file_retention_period"), pOpt("monitor_server_security_mode"),
		pOpt("monitor_server_login"), pOpt("monitor_server_password")},
	"sp_delete_log_shipping_secondary_database": {pReq("secondary_database"), pOpt("ignoreremotemonitor")},
	"sp_delete_log_shipping_secondary_primary":  {pReq("primary_server"), pReq("primary_database")},
	"sp_help_log_shipping_monitor":              {pOpt("verbose")},
	"sp_add_log_shipping_alert_job":             {pOutG("alert_job_id")},
	"sp_help_log_shipping_primary_database":     {pOpt("database"), pOpt("primary_id")},
	"sp_help_log_shipping_secondary_database":   {pOpt("secondary_database"), pOpt("secondary_id")},
	"sp_add_jobschedule": {pOpt("job_id"), pOpt("job_name"), pReq("name"), pOpt("enabled"), pOpt("freq_type"),
		pOpt("freq_interval"), pOpt("freq_subday_type"), pOpt("freq_subday_interval"), pOpt("freq_relative_interval"),
		pOpt("freq_recurrence_factor"), pOpt("active_start_date"), pOpt("active_end_date"), pOpt("active_start_time"),
		pOpt("active_end_time"), pOutI("schedule_id"), pOpt("automatic_post"), pOutG("schedule_uid")},
	"sp_add_schedule": {pReq("schedule_name"), pOpt("enabled"), pOpt("freq_type"), pOpt("freq_interval"), pOpt("freq_subday_type"),
		pOpt("freq_subday_interval"), pOpt("freq_relative_interval"), pOpt("freq_recurrence_factor"), pOpt("active_start_date"),
		pOpt("active_end_date"), pOpt("active_start_time"), pOpt("active_end_time"), pOpt("owner_login_name"), pOutG("schedule_uid"),
		pOutI("schedule_id"), pOpt("originating_server")},
	"sp_attach_schedule": {pOpt("job_id"), pOpt("job_name"), pOpt("schedule_id"), pOpt("schedule_name"), pOpt("automatic_post")},
	"sp_update_job": {pOpt("job_id"), pOpt("job_name"), pOpt("new_name"), pOpt("enabled"), pOpt("description"),
		pOpt("start_step_id"), pOpt("category_name"), pOpt("owner_login_name"), pOpt("notify_level_eventlog"),
		pOpt("notify_level_email"), pOpt("notify_level_netsend"), pOpt("notify_level_page"), pOpt("notify_email_operator_name"),
		pOpt("notify_netsend_operator_name"), pOpt("notify_page_operator_name"), pOpt("delete_level"), pOpt("automatic_post")},
	"sp_start_job":        {pOpt("job_name"), pOpt("job_id"), pOpt("error_flag"), pOpt("server_name"), pOpt("step_name"), pOpt("output_flag")},
	"sp_stop_job":         {pOpt("job_name"), pOpt("job_id"), pOpt("originating_server"), pOpt("server_name")},
	"sp_delete_job":       {pOpt("job_id"), pOpt("job_name"), pOpt("originating_server"), pOpt("delete_history"), pOpt("delete_unused_schedule")},
	"sp_help_job":         {pOpt("job_id"), pOpt("job_name")},
	"xp_servicecontrol":   {pReq("action"), pReq("service")},
	"sp_chatdr_fault":     {pReq("action"), pOpt("match"), pOpt("delay_ms"), pOpt("error"), pOpt("count")},
	"sp_help_jobactivity": {pOpt("job_id"), pOpt("job_name"), pOpt("session_id")},
}

// msdbProcs live in msdb: they must be called as msdb.dbo.x (or from msdb).
var msdbProcs = map[string]bool{
	"sp_add_jobschedule": true, "sp_add_schedule": true, "sp_attach_schedule": true, "sp_update_job": true, "sp_start_job": true, "sp_stop_job": true,
	"sp_delete_job": true, "sp_help_job": true, "sp_help_jobactivity": true,
}

// splitProcName returns the database qualifier ("" when none) and the
// procedure's name, lower case.
func splitProcName(name string) (db, short string) {
	parts := strings.Split(strings.ToLower(name), ".")
	for i := range parts {
		parts[i] = strings.Trim(parts[i], "[]\"")
	}
	short = parts[len(parts)-1]
	if len(parts) == 3 {
		db = parts[0]
	}
	return db, short
}

// sysProc runs one of the procedures of procSpecs; handled is false for an
// unknown name. The engine lock is held.
func (x *execCtx) sysProc(name string, args []procArg, byRPC bool) (handled bool, err error) {
	qual, short := splitProcName(name)
	spec, ok := procSpecs[short]
	if !ok {
		return false, nil
	}
	if msdbProcs[short] {
		if qual == "" {
			qual = strings.ToLower(x.db)
		}
		if qual != "msdb" {
			return true, sqlErr(msgProcNotFound, name)
		}
	} else if qual != "" && x.in.db(qual) == nil {
		return true, sqlErr(msgProcNotFound, name)
	}
	c := &procCall{x: x, name: short, vals: map[string]any{}, given: map[string]bool{}, args: map[string]procArg{}}
	pos := 0
	for _, a := range args {
		n := strings.ToLower(strings.TrimPrefix(a.Name, "@"))
		if n == "" {
			if pos >= len(spec) {
				return true, sqlErr(8144, short)
			}
			n = spec[pos].name
			pos++
		} else {
			found := false
			for _, p := range spec {
				if p.name == n {
					found = true
				}
			}
			if !found {
				return true, sqlErr(8145, "@"+n, short)
			}
		}
		c.vals[n], c.given[n] = a.Value, true
		a.Name = n
		c.args[n] = a
	}
	for _, p := range spec {
		if p.required && !c.given[p.name] {
			return true, sqlErr(201, short, "@"+p.name)
		}
	}
	rc, err := x.runSysProc(c)
	if err != nil {
		return true, err
	}
	x.lastRC = rc
	if !byRPC {
		// EXEC … @x = @v OUTPUT stores the value in the variable.
		for _, rv := range c.outs {
			n := strings.TrimPrefix(rv.Name, "@")
			if a := c.args[n]; a.Var != "" {
				if err := x.assign(a.Var, rv.Value); err != nil {
					return true, err
				}
			}
		}
	}
	x.procReply(c, rc, byRPC)
	return true, nil
}

func (x *execCtx) runSysProc(c *procCall) (int32, error) {
	switch c.name {
	case "sp_add_log_shipping_primary_database":
		return x.lsAddPrimary(c)
	case "sp_add_log_shipping_primary_secondary":
		return x.lsAddPrimarySecondary(c)
	case "sp_delete_log_shipping_primary_secondary":
		return x.lsDeletePrimarySecondary(c)
	case "sp_delete_log_shipping_primary_database":
		return x.lsDeletePrimary(c)
	case "sp_change_log_shipping_primary_database":
		return x.lsChangePrimary(c)
	case "sp_add_log_shipping_secondary_primary":
		return x.lsAddSecondaryPrimary(c)
	case "sp_add_log_shipping_secondary_database":
		return x.lsAddSecondaryDatabase(c)
	case "sp_change_log_shipping_secondary_database":
		return x.lsChangeSecondaryDatabase(c)
	case "sp_change_log_shipping_secondary_primary":
		return x.lsChangeSecondaryPrimary(c)
	case "sp_delete_log_shipping_secondary_database":
		return x.lsDeleteSecondaryDatabase(c)
	case "sp_delete_log_shipping_secondary_primary":
		return x.lsDeleteSecondaryPrimary(c)
	case "sp_help_log_shipping_monitor":
		return x.lsHelpMonitor(c)
	case "sp_add_log_shipping_alert_job":
		return x.lsAddAlertJob(c)
	case "sp_help_log_shipping_primary_database":
		return x.lsHelpPrimary(c)
	case "sp_help_log_shipping_secondary_database":
		return x.lsHelpSecondary(c)
	case "sp_add_jobschedule":
		return x.jobAddSchedule(c)
	case "sp_add_schedule":
		return x.jobAddSharedSchedule(c)
	case "sp_attach_schedule":
		return x.jobAttachSchedule(c)
	case "sp_update_job":
		return x.jobUpdate(c)
	case "sp_start_job":
		return x.jobStart(c)
	case "sp_stop_job":
		return x.jobStop(c)
	case "sp_delete_job":
		return x.jobDelete(c)
	case "sp_help_job":
		return x.jobHelp(c)
	case "sp_help_jobactivity":
		return x.jobHelpActivity(c)
	case "xp_servicecontrol":
		return x.serviceControl(c)
	case "sp_chatdr_fault":
		return x.chatdrFault(c)
	}
	return 0, sqlErr(msgProcNotFound, c.name)
}

// procReply queues the procedure's output: INFO messages, its result set,
// RETURNSTATUS and the OUTPUT values.
func (x *execCtx) procReply(c *procCall, rc int32, byRPC bool) {
	if x.w == nil {
		if x.sink != nil && c.hasSet {
			x.sink(c.cols, c.rows)
		}
		return
	}
	w := x.w
	x.emit(func() error {
		for _, m := range c.infos {
			if err := w.Info(m); err != nil {
				return err
			}
		}
		if c.hasSet {
			tc := make([]tds.Column, len(c.cols))
			for i, col := range c.cols {
				tc[i] = tds.Column{Name: col.Name, Type: col.Type.tdsType(), Nullable: true}
			}
			if err := w.Columns(tc...); err != nil {
				return err
			}
			for _, r := range c.rows {
				if err := w.Row(r...); err != nil {
					return err
				}
			}
			if byRPC {
				if err := w.Done(tds.DoneCount, tds.CmdSelect, uint64(len(c.rows))); err != nil {
					return err
				}
			} else if err := w.DoneInProc(tds.DoneCount, tds.CmdSelect, uint64(len(c.rows))); err != nil {
				return err
			}
		}
		if err := w.ReturnStatus(rc); err != nil {
			return err
		}
		if byRPC {
			for _, rv := range c.outs {
				if err := w.ReturnValue(rv); err != nil {
					return err
				}
			}
			return nil
		}
		return w.DoneProc(0, tds.CmdExecute, 0)
	})
}

// q runs internal statements (in msdb, as sa) with the engine lock held and
// returns the rows of the last result set. params are name/value pairs,
// names with '@'.
func (in *Instance) q(sql string, params ...any) ([][]any, error) {
	var stmts []stmt
	if v, ok := in.sqlCache.Load(sql); ok {
		stmts = v.([]stmt)
	} else {
		var err error
		if stmts, err = parseBatch(sql); err != nil {
			return nil, fmt.Errorf("internal statement %q: %w", sql, err)
		}
		in.sqlCache.Store(sql, stmts)
	}
	p := map[string]any{}
	for i := 0; i+1 < len(params); i += 2 {
		p[strings.ToLower(params[i].(string))] = params[i+1]
	}
	var last [][]any
	x := &execCtx{in: in, ctx: context.Background(), db: "msdb", login: "sa", opts: &sessionOpts{}, params: p}
	x.sink = func(_ []resultCol, rows [][]any) { last = rows }
	for _, s := range stmts {
		if err := x.exec(s); err != nil {
			return nil, err
		}
	}
	return last, nil
}

// sqlNumber returns the number of a *tds.Error in err (the last one), 0 if
// none.
func sqlNumber(err error) int32 {
	var n int32
	for _, e := range flatten(err) {
		var te *tds.Error
		if errors.As(e, &te) {
			n = te.Number
		}
	}
	return n
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// errText returns the messages of err joined, for history tables.
func errText(err error) string {
	var parts []string
	for _, e := range flatten(err) {
		var te *tds.Error
		if errors.As(e, &te) {
			parts = append(parts, fmt.Sprintf("Msg %d, Level %d, State %d: %s", te.Number, te.Class, te.State, te.Message))
		} else {
			parts = append(parts, e.Error())
		}
	}
	return strings.Join(parts, " ")
}
