package mssql

import (
	"errors"
	"fmt"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// Sentinel errors of the engine's Go API. Errors sent to SQL clients are
// *tds.Error values built by the sqlErr helpers below.
var (
	// ErrClosed is returned by Instance methods after Close.
	ErrClosed = errors.New("mssql: instance closed")
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("mssql: invalid config")
	// ErrStorage wraps failures of the durable store; the statement that
	// met it was not acknowledged.
	ErrStorage = errors.New("mssql: storage failure")
)

// Message numbers the engine sends, with SQL Server's texts (as of SQL Server
// 2014). Their class, state and text are in msgTable.
const (
	msgInvalidColumn       = 207
	msgInvalidObject       = 208
	msgSyntax              = 102
	msgSyntaxKeyword       = 156
	msgInsertTooFewValues  = 109
	msgInsertTooManyValues = 110
	msgNotBuiltin          = 195
	msgConvertDate         = 241
	msgConvertFailed       = 245
	msgNullNotAllowed      = 515
	msgIdentityInsert      = 544
	msgMustDeclare         = 137
	msgDBExists            = 1801
	msgObjectExists        = 2714
	msgStatementTerminated = 3621
	msgDropNotExists       = 3701
	msgDropInUse           = 3702
	msgProcNotFound        = 2812
	msgDBNotExists         = 911
	msgDBRestoring         = 927
	msgDBOffline           = 942
	msgSingleUser          = 924
	msgReadOnly            = 3906
	msgKillSelf            = 6104
	msgKillNotActive       = 6106
	msgKillSystem          = 6107
	msgOverflow            = 8115
	msgDivideByZero        = 8134
	msgTruncated           = 8152
	msgAlterDBFailed       = 5069
	msgChangedDB           = 5701
	msgNonBooleanWhere     = 4145
	msgAggregateNeedGroup  = 8120
	msgOrderByDistinct     = 145
	msgTopNegative         = 1014

	// Variants: same number, another text.
	msgNullNotAllowedUpdate = variantBase + 515
	msgDropTableNotExists   = variantBase + 3701
)

// variantBase is added to a message number for a second text of the same
// number; sqlErr sends number % variantBase.
const variantBase = 1_000_000

// msgDef is a message: class (severity), state and format text.
type msgDef struct {
	class uint8
	state uint8
	text  string
}

// msgTable holds every message the engine sends: class, state and SQL
// Server's text (as of SQL Server 2014), formatted with fmt.Sprintf. Keys are
// message numbers; a variant text of a number uses number+variantBase.
var msgTable = map[int32]msgDef{
	msgSyntax:               {16, 1, "Incorrect syntax near '%s'."},
	108:                     {16, 1, "The ORDER BY position number %d is out of range of the number of items in the select list."},
	msgInsertTooFewValues:   {16, 1, "There are more columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement."},
	msgInsertTooManyValues:  {16, 1, "There are fewer columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement."},
	148:                     {15, 1, "Incorrect time syntax in time string '%s' used with WAITFOR."},
	msgMustDeclare:          {16, 1, "Must declare the scalar variable \"%s\"."},
	msgOrderByDistinct:      {16, 1, "ORDER BY items must appear in the select list if SELECT DISTINCT is specified."},
	105:                     {15, 1, "Unclosed quotation mark after the character string '%s'."},
	116:                     {16, 1, "Only one expression can be specified in the select list when the subquery is not introduced with EXISTS."},
	134:                     {15, 1, "The variable name '%s' has already been declared. Variable names must be unique within a query batch or stored procedure."},
	141:                     {15, 1, "A SELECT statement that assigns a value to a variable must not be combined with data-retrieval operations."},
	147:                     {15, 1, "An aggregate may not appear in the WHERE clause unless it is in a subquery contained in a HAVING clause or a select list, and the column being aggregated is an outer reference."},
	msgSyntaxKeyword:        {16, 1, "Incorrect syntax near the keyword '%s'."},
	174:                     {15, 1, "The %s function requires %d argument(s)."},
	191:                     {15, 1, "Some part of your SQL statement is nested too deeply. Rewrite the query or break it up into smaller queries."},
	155:                     {15, 1, "'%s' is not a recognized %s option."},
	msgNotBuiltin:           {16, 1, "'%s' is not a recognized built-in function name."},
	206:                     {16, 2, "Operand type clash: %s is incompatible with %s"},
	209:                     {16, 1, "Ambiguous column name '%s'."},
	msgInvalidColumn:        {16, 1, "Invalid column name '%s'."},
	msgInvalidObject:        {16, 1, "Invalid object name '%s'."},
	msgConvertDate:          {16, 1, "Conversion failed when converting date and/or time from character string."},
	msgConvertFailed:        {16, 1, "Conversion failed when converting the %s value '%s' to data type %s."},
	263:                     {16, 1, "Must specify table to select from."},
	402:                     {16, 1, "The data types %s and %s are incompatible in the comparison operator."},
	msgNullNotAllowed:       {16, 1, "Cannot insert the value NULL into column '%s', table '%s'; column does not allow nulls. INSERT fails."},
	msgNullNotAllowedUpdate: {16, 2, "Cannot insert the value NULL into column '%s', table '%s'; column does not allow nulls. UPDATE fails."},
	512:                     {16, 1, "Subquery returned more than 1 value. This is not permitted when the subquery follows =, !=, <, <= , >, >= or when the subquery is used as an expression."},
	msgIdentityInsert:       {16, 1, "Cannot insert explicit value for identity column in table '%s' when IDENTITY_INSERT is set to OFF."},
	msgDBNotExists:          {16, 1, "Database '%s' does not exist. Make sure that the name is entered correctly."},
	msgSingleUser:           {14, 1, "Database '%s' is already open and can only have one user at a time."},
	msgDBRestoring:          {14, 1, "Database '%s' cannot be opened. It is in the middle of a restore."},
	msgDBOffline:            {14, 1, "Database '%s' cannot be opened because it is offline."},
	msgTopNegative:          {16, 1, "A TOP or FETCH clause contains an invalid value."},
	msgDBExists:             {16, 1, "Database '%s' already exists. Choose a different database name."},
	1834:                    {16, 1, "The file '%s' cannot be overwritten.  It is being used by database '%s'."},
	1911:                    {16, 1, "Column name '%s' does not exist in the target table or view."},
	2627:                    {14, 1, "Violation of PRIMARY KEY constraint '%s'. Cannot insert duplicate key in object '%s'. The duplicate key value is (%s)."},
	2705:                    {16, 3, "Column names in each table must be unique. Column name '%s' in table '%s' is specified more than once."},
	msgObjectExists:         {16, 1, "There is already an object named '%s' in the database."},
	2715:                    {16, 6, "Column, parameter, or variable #%d: Cannot find data type %s."},
	2744:                    {16, 2, "Multiple identity columns specified for table '%s'. Only one identity column per table is allowed."},
	2749:                    {16, 2, "Identity column '%s' must be of data type int, bigint, smallint, tinyint, or decimal or numeric with a scale of 0, and constrained to be nonnullable."},
	2760:                    {16, 1, "The specified schema name \"%s\" either does not exist or you do not have permission to use it."},
	msgProcNotFound:         {16, 1, "Could not find stored procedure '%s'."},
	3013:                    {16, 1, "%s is terminating abnormally."},
	3014:                    {0, 1, "%s successfully processed %d pages in %.3f seconds (%.3f MB/sec)."},
	3032:                    {16, 1, "One or more of the options (norecovery) are not supported for this statement. Review the documentation for supported options."},
	3101:                    {16, 1, "Exclusive access could not be obtained because the database is in use."},
	3117:                    {16, 1, "The log or differential backup cannot be restored because no files are ready to rollforward."},
	3119:                    {16, 1, "Problems were identified while planning for the RESTORE statement. Previous messages provide details."},
	3135:                    {16, 2, "The backup set in file '%s' was created by BACKUP DATABASE and cannot be used for this restore operation."},
	3153:                    {16, 2, "The database is already fully recovered."},
	3154:                    {16, 4, "The backup set holds a backup of a database other than the existing '%s' database."},
	3156:                    {16, 4, "File '%s' cannot be restored to '%s'. Use WITH MOVE to identify a valid location for the file."},
	3159:                    {16, 1, "The tail of the log for the database \"%s\" has not been backed up. Use BACKUP LOG WITH NORECOVERY to backup the log if it contains work you do not want to lose. Use the WITH REPLACE or WITH STOPAT clause of the RESTORE statement to just overwrite the contents of the log."},
	3183:                    {16, 1, "RESTORE detected an error on page (1:%d) in database \"%s\" as read from the backup set."},
	3189:                    {16, 1, "Damage to the backup set was detected."},
	3201:                    {16, 2, "Cannot open backup device '%s'. Operating system error %d(%s)."},
	3203:                    {16, 1, "Read on \"%s\" failed: 38(Reached the end of the file.)"},
	3211:                    {0, 1, "%d percent processed."},
	3234:                    {16, 2, "Logical file '%s' is not part of database '%s'. Use RESTORE FILELISTONLY to list the logical file names."},
	3241:                    {16, 0, "The media family on device '%s' is incorrectly formed. SQL Server cannot process this media family."},
	3262:                    {0, 1, "The backup set on file %d is valid."},
	msgStatementTerminated:  {16, 1, "The statement has been terminated."},
	msgDropNotExists:        {11, 1, "Cannot drop the database '%s', because it does not exist or you do not have permission."},
	msgDropTableNotExists:   {11, 5, "Cannot drop the table '%s', because it does not exist or you do not have permission."},
	msgDropInUse:            {16, 1, "Cannot drop database \"%s\" because it is currently in use."},
	3708:                    {16, 1, "Cannot drop the database '%s' because it is a system database."},
	msgReadOnly:             {16, 1, "Failed to update database \"%s\" because the database is read-only."},
	4035:                    {0, 1, "Processed %d pages for database '%s', file '%s' on file 1."},
	4038:                    {16, 1, "Cannot find file ID %d on device '%s'."},
	4104:                    {16, 1, "The multi-part identifier \"%s\" could not be bound."},
	msgNonBooleanWhere:      {16, 1, "An expression of non-boolean type specified in a context where a condition is expected, near '%s'."},
	4208:                    {16, 1, "The statement BACKUP LOG is not allowed while the recovery model is SIMPLE. Use BACKUP DATABASE or change the recovery model using ALTER DATABASE."},
	4214:                    {16, 1, "BACKUP LOG cannot be performed because there is no current database backup."},
	4305:                    {16, 1, "The log in this backup set begins at LSN %d, which is too recent to apply to the database. An earlier log backup that includes LSN %d can be restored."},
	4326:                    {16, 1, "The log in this backup set terminates at LSN %d, which is too early to apply to the database. A more recent log backup that includes LSN %d can be restored."},
	4330:                    {16, 1, "This backup set cannot be applied because it is on a recovery path that is inconsistent with the database. The recovery path is the sequence of data and log backups that have brought the database to a particular recovery point. Find a compatible backup to restore, or restore the rest of the database to match a recovery point within this backup set, which will restore the database to a different point in time. For more information about recovery paths, see SQL Server Books Online."},
	5011:                    {14, 1, "User does not have permission to alter database '%s', the database does not exist, or the database is not in a state that allows access checks."},
	5052:                    {16, 1, "ALTER DATABASE is not permitted while a database is in the Restoring state."},
	5060:                    {10, 1, "Nonqualified transactions are being rolled back. Estimated rollback completion: 100%%."},
	5061:                    {16, 1, "ALTER DATABASE failed because a lock could not be placed on database '%s'. Try again later."},
	5063:                    {16, 1, "Database '%s' is in warm standby. A warm-standby database is read-only."},
	5064:                    {16, 1, "Changes to the state or options of database '%s' cannot be made at this time. The database is in single-user mode, and a user is currently connected to it."},
	msgAlterDBFailed:        {16, 1, "ALTER DATABASE statement failed."},
	msgChangedDB:            {0, 1, "Changed database context to '%s'."},
	msgKillSelf:             {16, 1, "Cannot use KILL to kill your own process."},
	msgKillNotActive:        {16, 1, "Process ID %d is not an active process ID."},
	msgKillSystem:           {16, 1, "Only user processes can be killed."},
	6112:                    {16, 1, "Process ID must be a number."},
	8102:                    {16, 1, "Cannot update identity column '%s'."},
	msgOverflow:             {16, 1, "Arithmetic overflow error converting %s to data type %s."},
	8117:                    {16, 1, "Operand data type %s is invalid for %s operator."},
	msgAggregateNeedGroup:   {16, 1, "Column '%s' is invalid in the select list because it is not contained in either an aggregate function or the GROUP BY clause."},
	msgDivideByZero:         {16, 1, "Divide by zero error encountered."},
	msgTruncated:            {16, 1, "String or binary data would be truncated."},
	8144:                    {16, 2, "Procedure or function %s has too many arguments specified."},
	8169:                    {16, 2, "Conversion failed when converting from a character string to uniqueidentifier."},
	10741:                   {15, 1, "A TOP can not be used in the same query or sub-query as a OFFSET."},
	10742:                   {15, 1, "The offset specified in a %s clause may not be negative."},
	10744:                   {15, 1, "The number of rows provided for a FETCH clause must be greater then zero."},
}

// sqlErr builds message id (a number, or a variant) with its text formatted
// with args.
func sqlErr(id int32, args ...any) *tds.Error {
	def, ok := msgTable[id]
	if !ok {
		def = msgDef{class: 16, state: 1, text: "%v"}
	}
	return &tds.Error{Number: id % variantBase, State: def.state, Class: def.class, Message: fmt.Sprintf(def.text, args...)}
}

// terminated joins err with 3621 "The statement has been terminated.", as SQL
// Server does after constraint and conversion errors in DML.
func terminated(err error) error {
	return errors.Join(err, sqlErr(msgStatementTerminated))
}
