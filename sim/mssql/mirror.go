package mssql

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chatdr/chatdr/sim/mssql/tds"
	bolt "go.etcd.io/bbolt"
)

// Database mirroring between simulator instances.
//
// Each instance may have a mirroring endpoint (Config.MirrorListen, as
// SQL Server's database mirroring endpoint on port 5022; not the TDS
// port): a TCP listener speaking a small internal protocol, one JSON
// request and one JSON reply per connection. SET PARTNER = 'TCP://host:port'
// names the partner's endpoint.
//
// The principal ships its log: after every statement that changed a
// mirrored database, the statement's session waits (safety FULL) until a
// shipper goroutine has sent the log entries after the mirror's LSN and the
// mirror has committed them (hardened) — the client's answer comes only
// then. With safety OFF nobody waits. A partner that does not answer makes
// the state DISCONNECTED (the principal keeps serving, as SQL Server does
// without a witness); a heartbeat every 250 ms detects it and, once the
// partner answers again, resends what it misses (SYNCHRONIZING, then
// SYNCHRONIZED).

// mirrorMeta is a database's mirroring configuration (durable, in dbMeta).
type mirrorMeta struct {
	GUID            tds.GUID `json:"guid"`
	Role            string   `json:"role"` // PRINCIPAL or MIRROR
	Partner         string   `json:"partner"`
	PartnerInstance string   `json:"partner_instance,omitempty"`
	Safety          string   `json:"safety"` // FULL or OFF
	Witness         string   `json:"witness,omitempty"`
	State           string   `json:"state"` // SYNCHRONIZED, SYNCHRONIZING, DISCONNECTED, SUSPENDED
	FailoverLSN     uint64   `json:"failover_lsn,omitempty"`
	// Suspended is set by SET PARTNER SUSPEND (either side) until RESUME:
	// nothing is shipped, the state stays SUSPENDED.
	Suspended bool  `json:"suspended,omitempty"`
	RoleSeq   int64 `json:"role_seq"`
	SafetySeq int64 `json:"safety_seq"`
}

func (m *mirrorMeta) clone() *mirrorMeta {
	c := *m
	return &c
}

var mirrorStateCode = map[string]int64{"SUSPENDED": 0, "DISCONNECTED": 1, "SYNCHRONIZING": 2, "PENDING_FAILOVER": 3, "SYNCHRONIZED": 4}

// mirroring is the runtime side: the endpoint and the shipper.
type mirroring struct {
	ln   net.Listener
	addr string // TCP://host:port

	mu      sync.Mutex
	cond    *sync.Cond
	shipped map[string]uint64 // db (lower) -> LSN the mirror confirmed; 0 unknown
	fails   map[string]int    // db -> failed shipments so far
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
}

type mirrorMsg struct {
	Op                string     `json:"op"` // hello, apply, ping, failover, off, safety, witness
	DB                string     `json:"db"`
	GUID              tds.GUID   `json:"guid"`
	From              string     `json:"from"`
	FromInstance      string     `json:"from_instance"`
	Entries           []logEntry `json:"entries,omitempty"`
	PrevLSN           uint64     `json:"prev_lsn,omitempty"`
	LSN               uint64     `json:"lsn,omitempty"`
	LogBackupLSN      uint64     `json:"log_backup_lsn,omitempty"`
	DatabaseBackupLSN uint64     `json:"database_backup_lsn,omitempty"`
	Fork              tds.GUID   `json:"fork"`
	Recovery          string     `json:"recovery,omitempty"`
	Value             string     `json:"value,omitempty"`
}

type mirrorReply struct {
	OK       bool       `json:"ok"`
	Err      *tds.Error `json:"err,omitempty"`
	Instance string     `json:"instance,omitempty"`
	LSN      uint64     `json:"lsn,omitempty"`
	Role     string     `json:"role,omitempty"`
}

// MirrorAddr returns the mirroring endpoint's address as SET PARTNER names
// it ("TCP://127.0.0.1:5022"), "" without an endpoint.
func (in *Instance) MirrorAddr() string {
	if in.mir == nil || in.mir.ln == nil {
		return ""
	}
	return in.mir.addr
}

// openMirroring starts the endpoint (if configured) and the shipper.
func (in *Instance) openMirroring() error {
	m := &mirroring{shipped: map[string]uint64{}, fails: map[string]int{}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	m.cond = sync.NewCond(&m.mu)
	in.mir = m
	if in.cfg.MirrorListen != "" {
		ln, err := net.Listen("tcp", in.cfg.MirrorListen)
		if err != nil {
			return fmt.Errorf("mirroring endpoint: %w", err)
		}
		m.ln = ln
		m.addr = "TCP://" + ln.Addr().String()
		m.wg.Add(1)
		go in.acceptMirror()
	}
	m.wg.Add(1)
	go in.shipper()
	return nil
}

func (in *Instance) closeMirroring() {
	m := in.mir
	if m == nil {
		return
	}
	close(m.stop)
	if m.ln != nil {
		_ = m.ln.Close()
	}
	m.mu.Lock()
	m.cond.Broadcast()
	m.mu.Unlock()
	m.wg.Wait()
}

func (in *Instance) acceptMirror() {
	m := in.mir
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			var msg mirrorMsg
			if err := json.NewDecoder(bufio.NewReader(c)).Decode(&msg); err != nil {
				return
			}
			rep := in.handleMirror(msg)
			_ = json.NewEncoder(c).Encode(rep)
		}()
	}
}

// mirrorCall sends one request to a partner endpoint.
func mirrorCall(ctx context.Context, addr string, msg mirrorMsg) (mirrorReply, error) {
	host := addr
	if len(host) > 6 && strings.EqualFold(host[:6], "tcp://") {
		host = host[6:]
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return mirrorReply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(msg); err != nil {
		return mirrorReply{}, err
	}
	var rep mirrorReply
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&rep); err != nil {
		return mirrorReply{}, err
	}
	return rep, nil
}

func unreachable(addr string) *tds.Error { return sqlErr(1418, addr) }

func init() {
	for k, v := range map[int32]msgDef{
		954:  {14, 1, "The database \"%s\" cannot be opened. It is acting as a mirror database."},
		1404: {16, 10, "The command failed because the database mirror is busy. Reissue the command later."},
		1416: {16, 31, "Database \"%s\" is not configured for database mirroring."},
		1418: {16, 1, "The server network address \"%s\" can not be reached or does not exist. Check the network address name and that the ports for the local and remote endpoints are operational."},
		1422: {16, 2, "The mirror server instance is not caught up to the recent changes to database \"%s\". Unable to fail over."},
		1455: {16, 2, "The database mirroring service cannot be forced for database \"%s\" because the database is not in the correct state to become the principal database."},
		1465: {16, 1, "Database \"%s\" database is not in full recovery mode on each of the server instances. The full recovery model is required for a database to participate in database mirroring or in an availability group."},
		1468: {16, 1, "The operation cannot be performed on database \"%s\" because it is involved in a database mirroring session or an availability group. Some operations are not allowed on a database that is participating in a database mirroring session or in an availability group."},
		1475: {16, 105, "Database \"%s\" might contain bulk logged changes that have not been backed up. Take a log backup on the principal database or primary database. Then restore this backup either on the mirror database to enable database mirroring or on every secondary database to enable you to join it to the availability group."},
		3104: {16, 1, "RESTORE cannot operate on database '%s' because it is configured for database mirroring or has joined an availability group. If you intend to restore the database, use ALTER DATABASE to remove mirroring or to remove the database from its availability group."},
		3743: {16, 1, "The database '%s' is enabled for database mirroring. Database mirroring must be removed before you drop the database."},
		1478: {16, 211, "The mirror database, \"%s\", has insufficient transaction log data to preserve the log backup chain of the principal database. This may happen if a log backup from the principal database has not been taken or has not been restored on the mirror database."},
	} {
		if _, ok := msgTable[k]; !ok {
			msgTable[k] = v
		}
	}
}

func replyErr(e *tds.Error) mirrorReply { return mirrorReply{Err: e} }

// partnerErr is the error a partner answered with.
func partnerErr(rep mirrorReply, addr string) error {
	if rep.Err == nil {
		return unreachable(addr)
	}
	return rep.Err
}

// setMirror commits a database's new mirroring metadata (lock held).
func (in *Instance) setMirror(d *database, m *mirrorMeta) error {
	nd := *d
	nd.Mirror = m
	if err := in.commit(func(tx *bolt.Tx) error { return putDB(tx, &nd) }); err != nil {
		return err
	}
	d.dbMeta = nd.dbMeta
	return nil
}

// handleMirror answers a partner's request.
func (in *Instance) handleMirror(msg mirrorMsg) mirrorReply {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return replyErr(unreachable(in.MirrorAddr()))
	}
	d := in.db(msg.DB)
	if d == nil {
		return replyErr(sqlErr(1416, msg.DB))
	}
	mm := d.Mirror
	if msg.Op == "hello" {
		if mm == nil || mm.Role != "MIRROR" || d.State != stateRestoring {
			return replyErr(sqlErr(1416, d.Name))
		}
		if !strings.EqualFold(mm.Partner, msg.From) {
			return replyErr(sqlErr(1416, d.Name))
		}
		if d.RedoStartFork != msg.Fork || d.RedoStartLSN < msg.LogBackupLSN || d.RedoStartLSN > msg.LSN {
			return replyErr(sqlErr(1478, d.Name))
		}
		nm := mm.clone()
		nm.GUID, nm.PartnerInstance, nm.State, nm.Safety = msg.GUID, msg.FromInstance, "SYNCHRONIZING", msg.Value
		if err := in.setMirror(d, nm); err != nil {
			return replyErr(&tds.Error{Number: 50000, Class: 16, State: 1, Message: err.Error()})
		}
		return mirrorReply{OK: true, Instance: in.cfg.Name, LSN: d.LSN, Role: "MIRROR"}
	}
	if mm == nil || mm.GUID != msg.GUID {
		return replyErr(sqlErr(1416, d.Name))
	}
	switch msg.Op {
	case "ping":
		if mm.Suspended {
			return mirrorReply{OK: true, Instance: in.cfg.Name, LSN: d.LSN, Role: mm.Role}
		}
		if mm.Role == "MIRROR" {
			if msg.LSN == d.LSN {
				mm.State = "SYNCHRONIZED"
			} else {
				mm.State = "SYNCHRONIZING"
			}
		} else if mm.State == "DISCONNECTED" {
			in.kickShipper()
		}
		return mirrorReply{OK: true, Instance: in.cfg.Name, LSN: d.LSN, Role: mm.Role}
	case "apply":
		if mm.Role != "MIRROR" || d.State != stateRestoring {
			return replyErr(sqlErr(1416, d.Name))
		}
		if msg.PrevLSN != d.LSN {
			return mirrorReply{OK: false, Err: sqlErr(1478, d.Name), LSN: d.LSN, Role: "MIRROR"}
		}
		if err := in.applyMirrorLog(d, msg); err != nil {
			return replyErr(&tds.Error{Number: 50000, Class: 16, State: 1, Message: err.Error()})
		}
		return mirrorReply{OK: true, Instance: in.cfg.Name, LSN: in.db(msg.DB).LSN, Role: "MIRROR"}
	case "failover":
		if mm.Role != "MIRROR" {
			return replyErr(sqlErr(1404))
		}
		if d.LSN != msg.LSN {
			return replyErr(sqlErr(1422, d.Name))
		}
		nd := *d
		nm := mm.clone()
		nm.Role, nm.State, nm.FailoverLSN, nm.RoleSeq = "PRINCIPAL", "SYNCHRONIZED", d.LSN, mm.RoleSeq+1
		nd.Mirror = nm
		nd.State, nd.Standby = stateOnline, false
		nd.RedoStartLSN, nd.RedoStartFork = 0, tds.GUID{}
		if err := in.commit(func(tx *bolt.Tx) error { return putDB(tx, &nd) }); err != nil {
			return replyErr(&tds.Error{Number: 50000, Class: 16, State: 1, Message: err.Error()})
		}
		d.dbMeta = nd.dbMeta
		in.setShipped(d.Name, d.LSN)
		return mirrorReply{OK: true, Instance: in.cfg.Name, LSN: d.LSN, Role: "PRINCIPAL"}
	case "off":
		if err := in.setMirror(d, nil); err != nil {
			return replyErr(&tds.Error{Number: 50000, Class: 16, State: 1, Message: err.Error()})
		}
		return mirrorReply{OK: true}
	case "safety", "witness", "suspend", "resume":
		nm := mm.clone()
		switch msg.Op {
		case "safety":
			nm.Safety, nm.SafetySeq = msg.Value, mm.SafetySeq+1
		case "witness":
			nm.Witness = msg.Value
		case "suspend":
			nm.Suspended, nm.State = true, "SUSPENDED"
		case "resume":
			nm.Suspended, nm.State = false, "SYNCHRONIZING"
			defer in.kickShipper()
		}
		if err := in.setMirror(d, nm); err != nil {
			return replyErr(&tds.Error{Number: 50000, Class: 16, State: 1, Message: err.Error()})
		}
		return mirrorReply{OK: true}
	}
	return replyErr(&tds.Error{Number: 50000, Class: 16, State: 1, Message: "unknown mirroring request " + msg.Op})
}

// applyMirrorLog applies shipped log entries to the mirror copy and keeps
// them in its own log (so that after a failover its log backups continue
// the principal's chain).
func (in *Instance) applyMirrorLog(d *database, msg mirrorMsg) error {
	tables, err := applyLogIncremental(d.tables, msg.Entries, d.LSN)
	if err != nil {
		return err
	}
	nd := *d
	nd.tables = tables
	nd.LSN = msg.LSN
	nd.RedoStartLSN, nd.RedoStartFork = msg.LSN, msg.Fork
	nd.ForkGUID = msg.Fork
	nd.LogBackupLSN, nd.DatabaseBackupLSN = msg.LogBackupLSN, msg.DatabaseBackupLSN
	if msg.Recovery != "" {
		nd.Recovery = msg.Recovery
	}
	nm := d.Mirror.clone()
	nm.State = "SYNCHRONIZED"
	nd.Mirror = nm
	findRow := func(t *table, id uint64) *row {
		i := sort.Search(len(t.rows), func(i int) bool { return t.rows[i].id >= id })
		if i < len(t.rows) && t.rows[i].id == id {
			return t.rows[i]
		}
		return nil
	}
	if err := in.commit(func(tx *bolt.Tx) error {
		for _, e := range msg.Entries {
			if e.LSN <= d.LSN {
				continue
			}
			for _, op := range e.Ops {
				switch op.Op {
				case "table":
					if t := tables[op.Table]; t != nil {
						if err := putTable(tx, &nd, t); err != nil {
							return err
						}
					}
				case "drop":
					if t := d.tables[op.Table]; t != nil {
						if err := dropTableTx(tx, &nd, t); err != nil {
							return err
						}
					}
				case "row":
					if t := tables[op.Table]; t != nil {
						if r := findRow(t, op.ID); r != nil {
							if err := putRow(tx, &nd, t, r); err != nil {
								return err
							}
						}
					}
				case "del":
					if t := tables[op.Table]; t != nil {
						if err := deleteRow(tx, &nd, t, op.ID); err != nil {
							return err
						}
					}
				}
			}
		}
		db, err := dbBucket(tx, &nd)
		if err != nil {
			return err
		}
		lb, err := db.CreateBucketIfNotExists(bucketLog)
		if err != nil {
			return err
		}
		for _, e := range msg.Entries {
			if e.LSN <= d.LSN {
				continue
			}
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := lb.Put(rowKey(e.LSN), b); err != nil {
				return err
			}
		}
		if err := truncateLogTo(tx, &nd, nd.LogBackupLSN); err != nil {
			return err
		}
		return putDB(tx, &nd)
	}); err != nil {
		return err
	}
	d.dbMeta, d.tables = nd.dbMeta, nd.tables
	return nil
}

// readLogAfter returns the logged entries after LSN lsn, in LSN order.
func (s *store) readLogAfter(d *database, lsn uint64) ([]logEntry, error) {
	var out []logEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		db := tx.Bucket(dbBucketName(d.Name))
		if db == nil || db.Bucket(bucketLog) == nil {
			return nil
		}
		c := db.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(rowKey(lsn + 1)); k != nil; k, v = c.Next() {
			var e logEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// applyLogIncremental is applyLog for a few entries on large tables: only
// the tables the entries touch are copied (their row slices), and rows are
// found by binary search (rows are ordered by id) instead of rebuilding
// and sorting every row.
func applyLogIncremental(base map[string]*table, entries []logEntry, after uint64) (map[string]*table, error) {
	out := make(map[string]*table, len(base))
	for k, t := range base {
		out[k] = t
	}
	owned := map[string]bool{}
	own := func(k string) *table {
		t := out[k]
		if t == nil || owned[k] {
			return t
		}
		nt := &table{tableMeta: t.tableMeta, rows: append([]*row(nil), t.rows...)}
		nt.Cols = append([]colMeta(nil), t.Cols...)
		for i := range nt.Cols {
			nt.Cols[i].def = t.Cols[i].def
		}
		out[k], owned[k] = nt, true
		return nt
	}
	find := func(t *table, id uint64) (int, bool) {
		i := sort.Search(len(t.rows), func(i int) bool { return t.rows[i].id >= id })
		return i, i < len(t.rows) && t.rows[i].id == id
	}
	for _, e := range entries {
		if e.LSN <= after {
			continue
		}
		for _, op := range e.Ops {
			switch op.Op {
			case "table":
				if op.Meta == nil {
					return nil, fmt.Errorf("log entry %d: table op without definition", e.LSN)
				}
				t := own(op.Table)
				if t == nil {
					t = &table{}
					out[op.Table], owned[op.Table] = t, true
				}
				t.tableMeta = *op.Meta
				if err := t.prepare(); err != nil {
					return nil, err
				}
			case "drop":
				delete(out, op.Table)
				delete(owned, op.Table)
			case "row", "del":
				t := own(op.Table)
				if t == nil {
					return nil, fmt.Errorf("log entry %d: unknown table %s", e.LSN, op.Table)
				}
				i, found := find(t, op.ID)
				if op.Op == "del" {
					if found {
						t.rows = append(t.rows[:i], t.rows[i+1:]...)
					}
					continue
				}
				r := &row{id: op.ID, vals: make([]any, len(t.Cols))}
				for ci, c := range t.Cols {
					if ci < len(op.Vals) {
						v, err := decodeValue(op.Vals[ci], c.Type)
						if err != nil {
							return nil, err
						}
						r.vals[ci] = v
					}
				}
				switch {
				case found:
					t.rows[i] = r
				case i == len(t.rows):
					t.rows = append(t.rows, r)
				default:
					t.rows = append(t.rows, nil)
					copy(t.rows[i+1:], t.rows[i:])
					t.rows[i] = r
				}
			default:
				return nil, fmt.Errorf("log entry %d: unknown op %q", e.LSN, op.Op)
			}
		}
	}
	return out, nil
}

// truncateLogTo deletes the log entries at or before lsn.
func truncateLogTo(tx *bolt.Tx, d *database, lsn uint64) error {
	db := tx.Bucket(dbBucketName(d.Name))
	if db == nil || db.Bucket(bucketLog) == nil {
		return nil
	}
	lb := db.Bucket(bucketLog)
	c := lb.Cursor()
	var keys [][]byte
	for k, _ := c.First(); k != nil && len(k) == 8 && beUint64(k) <= lsn; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := lb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func (in *Instance) setShipped(db string, lsn uint64) {
	m := in.mir
	m.mu.Lock()
	m.shipped[strings.ToLower(db)] = lsn
	m.cond.Broadcast()
	m.mu.Unlock()
}

func (in *Instance) kickShipper() {
	select {
	case in.mir.kick <- struct{}{}:
	default:
	}
}

// mirrorTargets returns, for the mirrored principal databases with safety
// FULL whose log has not reached the mirror, the LSN a statement must wait
// for (lock held).
func (in *Instance) mirrorTargets() map[string]uint64 {
	if in.mir == nil {
		return nil
	}
	var out map[string]uint64
	for _, d := range in.dbs {
		mm := d.Mirror
		if mm == nil || mm.Role != "PRINCIPAL" || d.State != stateOnline {
			continue
		}
		if mm.Safety != "FULL" || mm.State == "DISCONNECTED" || mm.State == "SUSPENDED" {
			continue
		}
		if out == nil {
			out = map[string]uint64{}
		}
		out[strings.ToLower(d.Name)] = d.LSN
	}
	return out
}

// waitMirrors waits until the mirrors hardened the log up to the targets,
// or a shipment failed (the principal then runs exposed).
func (in *Instance) waitMirrors(ctx context.Context, targets map[string]uint64) {
	if len(targets) == 0 {
		return
	}
	m := in.mir
	m.mu.Lock()
	fails := map[string]int{}
	pending := false
	for db, lsn := range targets {
		fails[db] = m.fails[db]
		if m.shipped[db] < lsn {
			pending = true
		}
	}
	m.mu.Unlock()
	if !pending {
		return
	}
	in.kickShipper()
	stopWake := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer stopWake()
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		done := true
		for db, lsn := range targets {
			if m.shipped[db] < lsn && m.fails[db] == fails[db] {
				done = false
			}
		}
		select {
		case <-m.stop:
			return
		default:
		}
		if done || ctx.Err() != nil {
			return
		}
		m.cond.Wait()
	}
}

// shipper sends the principal's log and pings partners.
func (in *Instance) shipper() {
	m := in.mir
	defer m.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		heartbeat := false
		select {
		case <-m.stop:
			return
		case <-m.kick:
		case <-t.C:
			heartbeat = true
		}
		in.shipOnce(heartbeat)
	}
}

type shipWork struct {
	db      string
	msg     mirrorMsg
	partner string
	role    string
	needLog bool
}

func (in *Instance) shipOnce(heartbeat bool) {
	m := in.mir
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return
	}
	var work []shipWork
	for _, d := range in.dbs {
		mm := d.Mirror
		if mm == nil || mm.GUID == (tds.GUID{}) || mm.Suspended {
			continue
		}
		key := strings.ToLower(d.Name)
		m.mu.Lock()
		shipped := m.shipped[key]
		m.mu.Unlock()
		w := shipWork{db: d.Name, partner: mm.Partner, role: mm.Role,
			msg: mirrorMsg{DB: d.Name, GUID: mm.GUID, From: in.MirrorAddr(), FromInstance: in.cfg.Name, LSN: d.LSN}}
		if mm.Role == "PRINCIPAL" && d.State == stateOnline && shipped != 0 && d.LSN > shipped {
			after, err := in.store.readLogAfter(d, shipped)
			if err != nil {
				continue
			}
			w.msg.Op, w.msg.Entries, w.msg.PrevLSN = "apply", after, shipped
			w.msg.LogBackupLSN, w.msg.DatabaseBackupLSN, w.msg.Fork, w.msg.Recovery = d.LogBackupLSN, d.DatabaseBackupLSN, d.ForkGUID, d.Recovery
			work = append(work, w)
		} else if heartbeat || shipped == 0 {
			w.msg.Op = "ping"
			work = append(work, w)
		}
	}
	in.mu.Unlock()
	for _, w := range work {
		rep, err := mirrorCall(context.Background(), w.partner, w.msg)
		key := strings.ToLower(w.db)
		in.mu.Lock()
		d := in.db(w.db)
		if d == nil || d.Mirror == nil || d.Mirror.GUID != w.msg.GUID || d.Mirror.Suspended {
			in.mu.Unlock()
			continue
		}
		mm := d.Mirror
		switch {
		case err != nil || (!rep.OK && w.msg.Op == "ping"):
			mm.State = "DISCONNECTED"
			m.mu.Lock()
			m.shipped[key] = 0
			m.fails[key]++
			m.cond.Broadcast()
			m.mu.Unlock()
		case !rep.OK && rep.Role == "MIRROR" && rep.Err != nil && rep.Err.Number == 1478:
			// The mirror is elsewhere than we thought: resend from its LSN.
			m.mu.Lock()
			m.shipped[key] = rep.LSN
			m.mu.Unlock()
			mm.State = "SYNCHRONIZING"
			in.kickShipper()
		case !rep.OK || (mm.Role == "PRINCIPAL" && rep.Role != "MIRROR"):
			// The partner is not our mirror (it forgot the session, or it
			// became a principal itself): mirroring is suspended.
			mm.State = "SUSPENDED"
			m.mu.Lock()
			m.shipped[key] = 0
			m.fails[key]++
			m.cond.Broadcast()
			m.mu.Unlock()
		default:
			if mm.Role == "PRINCIPAL" {
				m.mu.Lock()
				m.shipped[key] = rep.LSN
				m.cond.Broadcast()
				m.mu.Unlock()
				if rep.LSN >= d.LSN {
					mm.State = "SYNCHRONIZED"
				} else {
					mm.State = "SYNCHRONIZING"
					in.kickShipper()
				}
			} else if mm.Role == "MIRROR" {
				if rep.Role == "MIRROR" {
					mm.State = "SUSPENDED"
				} else if mm.State == "DISCONNECTED" {
					mm.State = "SYNCHRONIZING"
				}
			}
		}
		in.mu.Unlock()
	}
}

// mirrorStmt runs ALTER DATABASE … SET PARTNER / SET WITNESS. It takes
// the engine lock itself: requests to the partner are made without it.
func (x *execCtx) mirrorStmt(s *stAlterDB) error {
	in := x.in
	fail := func(e error) error { return errors.Join(e, sqlErr(msgAlterDBFailed)) }
	name := s.Name
	if name == "" {
		name = x.db
	}
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return ErrClosed
	}
	d := in.db(name)
	if d == nil {
		in.mu.Unlock()
		return fail(sqlErr(5011, name))
	}
	// Copies: the shipper updates the state in place under the lock.
	var mm *mirrorMeta
	if d.Mirror != nil {
		mm = d.Mirror.clone()
	}
	var snap database
	snap.dbMeta = d.dbMeta
	snap.Mirror = mm
	in.mu.Unlock()
	ctx := x.ctx
	if s.Option == "WITNESS" {
		if mm == nil {
			return fail(sqlErr(1416, d.Name))
		}
		v := s.Addr
		if s.Value == "OFF" {
			v = ""
		}
		return x.mirrorUpdate(d.Name, mm, "witness", v)
	}
	switch s.Value {
	case "=":
		return x.setPartner(d.Name, s.Addr, snap)
	case "OFF":
		if mm == nil {
			return fail(sqlErr(1416, d.Name))
		}
		if mm.GUID != (tds.GUID{}) {
			_, _ = mirrorCall(ctx, mm.Partner, mirrorMsg{Op: "off", DB: d.Name, GUID: mm.GUID})
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		if d = in.db(name); d == nil {
			return fail(sqlErr(5011, name))
		}
		if err := in.setMirror(d, nil); err != nil {
			return err
		}
		x.done(0, 0, false)
		return nil
	case "SAFETY":
		if mm == nil {
			return fail(sqlErr(1416, d.Name))
		}
		if mm.Role != "PRINCIPAL" {
			return fail(sqlErr(1404))
		}
		return x.mirrorUpdate(d.Name, mm, "safety", s.Addr)
	case "FAILOVER":
		if mm == nil {
			return fail(sqlErr(1416, d.Name))
		}
		if mm.Role != "PRINCIPAL" {
			return fail(sqlErr(1404))
		}
		if mm.State != "SYNCHRONIZED" || mm.Safety != "FULL" {
			return fail(sqlErr(1422, d.Name))
		}
		return x.mirrorFailover(d.Name, mm, snap.LSN)
	case "FORCE_SERVICE_ALLOW_DATA_LOSS":
		if mm == nil {
			return fail(sqlErr(1416, d.Name))
		}
		if mm.Role != "MIRROR" {
			return fail(sqlErr(1455, d.Name))
		}
		if _, err := mirrorCall(ctx, mm.Partner, mirrorMsg{Op: "ping", DB: d.Name, GUID: mm.GUID, LSN: snap.LSN}); err == nil {
			return fail(sqlErr(1455, d.Name))
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		d = in.db(name)
		nd := *d
		nm := mm.clone()
		nm.Role, nm.State, nm.RoleSeq = "PRINCIPAL", "DISCONNECTED", mm.RoleSeq+1
		nd.Mirror = nm
		nd.State, nd.Standby = stateOnline, false
		nd.recover(d.RedoStartFork)
		if err := in.commit(func(tx *bolt.Tx) error { return putDB(tx, &nd) }); err != nil {
			return err
		}
		d.dbMeta = nd.dbMeta
		in.setShipped(d.Name, 0)
		x.done(0, 0, false)
		return nil
	case "SUSPEND", "RESUME":
		if mm == nil {
			return fail(sqlErr(1416, d.Name))
		}
		return x.mirrorUpdate(d.Name, mm, strings.ToLower(s.Value), "")
	case "TIMEOUT":
		if mm == nil {
			return fail(sqlErr(1416, d.Name))
		}
		x.in.mu.Lock()
		defer x.in.mu.Unlock()
		x.done(0, 0, false)
		return nil
	}
	return fail(sqlErr(msgSyntax, s.Value))
}

// mirrorFailover is a manual failover from a synchronized principal. Like
// SQL Server, it does not fail because a transaction committed a moment
// ago: the principal first sends the mirror the log it has not hardened
// yet, then holds its engine lock (no new commit) while the mirror takes
// over, so that both copies switch roles at the same LSN.
func (x *execCtx) mirrorFailover(name string, mm *mirrorMeta, lsn uint64) error {
	in, ctx, key := x.in, x.ctx, strings.ToLower(name)
	fail := func(e error) error { return errors.Join(e, sqlErr(msgAlterDBFailed)) }
	for attempt := 0; ; attempt++ {
		in.waitMirrors(ctx, map[string]uint64{key: lsn})
		if err := ctx.Err(); err != nil {
			return err
		}
		in.mu.Lock()
		d := in.db(name)
		switch {
		case d == nil:
			in.mu.Unlock()
			return fail(sqlErr(5011, name))
		case d.Mirror == nil || d.Mirror.GUID != mm.GUID:
			in.mu.Unlock()
			return fail(sqlErr(1416, name))
		case d.Mirror.Role != "PRINCIPAL":
			in.mu.Unlock()
			return fail(sqlErr(1404))
		case d.Mirror.State != "SYNCHRONIZED":
			in.mu.Unlock()
			return fail(sqlErr(1422, name))
		}
		in.mir.mu.Lock()
		shipped := in.mir.shipped[key]
		in.mir.mu.Unlock()
		if shipped < d.LSN {
			// A commit came in while the log was draining: drain again, a
			// few times, as the writers are not stopped by a failover.
			lsn = d.LSN
			in.mu.Unlock()
			if attempt >= 20 {
				return fail(sqlErr(1422, name))
			}
			continue
		}
		err := x.switchToMirror(d, mm)
		in.mu.Unlock()
		var te *tds.Error
		if errors.As(err, &te) {
			return fail(err)
		}
		return err
	}
}

// switchToMirror asks the mirror to take over at the principal's LSN and
// makes this copy the mirror (engine lock held, so no commit comes in).
func (x *execCtx) switchToMirror(d *database, mm *mirrorMeta) error {
	in := x.in
	rep, err := mirrorCall(x.ctx, mm.Partner, mirrorMsg{Op: "failover", DB: d.Name, GUID: mm.GUID, LSN: d.LSN})
	if err != nil {
		return unreachable(mm.Partner)
	}
	if !rep.OK {
		return partnerErr(rep, mm.Partner)
	}
	nd := *d
	nm := d.Mirror.clone()
	nm.Role, nm.State, nm.FailoverLSN, nm.RoleSeq = "MIRROR", "SYNCHRONIZED", d.LSN, d.Mirror.RoleSeq+1
	nd.Mirror = nm
	nd.State, nd.Standby = stateRestoring, false
	nd.RedoStartLSN, nd.RedoStartFork = d.LSN, d.ForkGUID
	if err := in.commit(func(tx *bolt.Tx) error { return putDB(tx, &nd) }); err != nil {
		return err
	}
	d.dbMeta = nd.dbMeta
	for _, o := range in.otherSessions(x.sess, d.Name) {
		_ = o.Kill()
	}
	x.done(0, 0, false)
	return nil
}

// mirrorUpdate changes safety or witness here and on the partner.
func (x *execCtx) mirrorUpdate(name string, mm *mirrorMeta, op, value string) error {
	in := x.in
	if mm.GUID != (tds.GUID{}) {
		if rep, err := mirrorCall(x.ctx, mm.Partner, mirrorMsg{Op: op, DB: name, GUID: mm.GUID, Value: value}); err == nil && !rep.OK && rep.Err != nil {
			return errors.Join(rep.Err, sqlErr(msgAlterDBFailed))
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	d := in.db(name)
	if d == nil || d.Mirror == nil {
		return errors.Join(sqlErr(1416, name), sqlErr(msgAlterDBFailed))
	}
	nm := d.Mirror.clone()
	switch op {
	case "safety":
		nm.Safety, nm.SafetySeq = value, nm.SafetySeq+1
	case "witness":
		nm.Witness = value
	case "suspend":
		nm.Suspended, nm.State = true, "SUSPENDED"
	case "resume":
		nm.Suspended, nm.State = false, "SYNCHRONIZING"
		in.setShipped(d.Name, 0) // learn the mirror's LSN again
		in.kickShipper()
	}
	if err := in.setMirror(d, nm); err != nil {
		return err
	}
	x.done(0, 0, false)
	return nil
}

// setPartner is SET PARTNER = 'TCP://…': on a RESTORING database it makes
// this copy the mirror-to-be (it waits for the principal); on an ONLINE
// one it connects to the partner, which must already name us, and starts
// mirroring.
func (x *execCtx) setPartner(name, addr string, snap database) error {
	in := x.in
	fail := func(e error) error { return errors.Join(e, sqlErr(msgAlterDBFailed)) }
	if in.MirrorAddr() == "" {
		// No mirroring endpoint on this instance.
		return fail(sqlErr(1418, addr))
	}
	if !strings.HasPrefix(strings.ToUpper(addr), "TCP://") {
		return fail(sqlErr(1418, addr))
	}
	if snap.Mirror != nil && snap.Mirror.GUID != (tds.GUID{}) {
		return fail(sqlErr(1468, name))
	}
	if snap.Recovery != "FULL" {
		return fail(sqlErr(1465, name))
	}
	if snap.State == stateRestoring {
		in.mu.Lock()
		defer in.mu.Unlock()
		d := in.db(name)
		if d == nil {
			return fail(sqlErr(5011, name))
		}
		if err := in.setMirror(d, &mirrorMeta{Role: "MIRROR", Partner: addr, Safety: "FULL", State: "DISCONNECTED"}); err != nil {
			return err
		}
		x.done(0, 0, false)
		return nil
	}
	if snap.State != stateOnline || snap.Standby || snap.LogBackupLSN == 0 {
		return fail(sqlErr(1475, name))
	}
	guid := newGUID()
	rep, err := mirrorCall(x.ctx, addr, mirrorMsg{Op: "hello", DB: name, GUID: guid, From: in.MirrorAddr(), FromInstance: in.cfg.Name,
		LSN: snap.LSN, LogBackupLSN: snap.LogBackupLSN, Fork: snap.ForkGUID, Value: "FULL"})
	if err != nil {
		return fail(sqlErr(1418, addr))
	}
	if !rep.OK {
		return fail(partnerErr(rep, addr))
	}
	in.mu.Lock()
	d := in.db(name)
	if d == nil {
		in.mu.Unlock()
		return fail(sqlErr(5011, name))
	}
	if err := in.setMirror(d, &mirrorMeta{GUID: guid, Role: "PRINCIPAL", Partner: addr, PartnerInstance: rep.Instance,
		Safety: "FULL", State: "SYNCHRONIZING", RoleSeq: 1, SafetySeq: 1}); err != nil {
		in.mu.Unlock()
		return err
	}
	in.setShipped(d.Name, rep.LSN)
	target := map[string]uint64{strings.ToLower(d.Name): d.LSN}
	in.mu.Unlock()
	in.waitMirrors(x.ctx, target)
	in.mu.Lock()
	x.done(0, 0, false)
	in.mu.Unlock()
	return nil
}

// mirroringView is sys.database_mirroring: a row per database, NULLs
// unless mirrored.
func (x *execCtx) mirroringView(qual string) *source {
	sc := newView(qual, []viewCol{
		{"database_id", typeInt}, {"mirroring_guid", typeGUID}, {"mirroring_state", typeTinyInt},
		{"mirroring_state_desc", nvarchar(60)}, {"mirroring_role", typeTinyInt}, {"mirroring_role_desc", nvarchar(60)},
		{"mirroring_role_sequence", typeInt}, {"mirroring_safety_level", typeTinyInt}, {"mirroring_safety_level_desc", nvarchar(60)},
		{"mirroring_safety_sequence", typeInt}, {"mirroring_partner_name", nvarchar(128)}, {"mirroring_partner_instance", nvarchar(128)},
		{"mirroring_witness_name", nvarchar(128)}, {"mirroring_witness_state", typeTinyInt}, {"mirroring_witness_state_desc", nvarchar(60)},
		{"mirroring_failover_lsn", typeLSN}, {"mirroring_connection_timeout", typeInt}, {"mirroring_redo_queue", typeInt},
		{"mirroring_redo_queue_type", nvarchar(60)}, {"mirroring_end_of_log_lsn", typeLSN}, {"mirroring_replication_lsn", typeLSN},
	})
	var rows [][]any
	for _, d := range x.in.sortedDBs() {
		mm := d.Mirror
		if mm == nil || mm.GUID == (tds.GUID{}) {
			rows = append(rows, []any{int64(d.ID), nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil})
			continue
		}
		role := int64(1)
		if mm.Role == "MIRROR" {
			role = 2
		}
		safety := int64(2)
		if mm.Safety == "OFF" {
			safety = 1
		}
		var witness, wstate, wdesc any = "", int64(0), "UNKNOWN"
		if mm.Witness != "" {
			witness, wstate, wdesc = mm.Witness, int64(2), "DISCONNECTED"
		}
		rows = append(rows, []any{int64(d.ID), mm.GUID, mirrorStateCode[mm.State], mm.State, role, mm.Role, mm.RoleSeq,
			safety, mm.Safety, mm.SafetySeq, mm.Partner, mm.PartnerInstance, witness, wstate, wdesc,
			lsnValue(mm.FailoverLSN), int64(10), nil, "UNLIMITED", lsnValue(d.LSN), lsnValue(d.LSN)})
	}
	return &source{sc: sc, rows: rows}
}
