Feature: Handshake
  After HELLO 3, a client opts in with CLIENT MAINT_NOTIFICATIONS ON. In mode
  "enabled" a refusal, or a RESP2 connection, fails the connection with a clear
  error; in mode "auto" the client carries on quietly with the feature off; in
  mode "disabled" it never asks. A connection that opts in while a maintenance
  window is open is told about it before the +OK of its opt-in.

  Scenario: HS1 mode enabled against a server without maintenance notifications fails clearly
    Given a plain redis-server that knows nothing of maintenance notifications
    When a client "app" with maintenance notifications enabled connects to the plain redis-server
    Then connecting "app" fails with an error that says "does not support maintenance notifications"

  Scenario: HS2 mode auto against a server without maintenance notifications works, with the feature off
    Given a plain redis-server that knows nothing of maintenance notifications
    When a client "app" with maintenance notifications auto connects to the plain redis-server
    Then "app" has maintenance notifications off because the server refused them
    And "app" can still write and read
    And "app" received no notification

  Scenario: HS3 over RESP2, mode enabled fails and mode auto falls back
    Given a standalone database
    When a client "strict" using RESP2 with maintenance notifications enabled connects
    Then connecting "strict" fails with an error that says "RESP3"
    When a client "app" using RESP2 with maintenance notifications auto connects
    Then "app" has maintenance notifications off
    And "app" can still write and read

  Scenario: HS4 a connection that opts in during a window receives the open notification before its +OK
    Given a standalone database
    And a client "app" with maintenance notifications enabled
    When a migration of the database's shard starts with a lead of 3 s
    And "app" receives MIGRATING
    Then a raw connection that opts in now receives MIGRATING before its +OK
    When "app" opens a new connection
    Then the new connection of "app" received MIGRATING at set-up and is relaxed
    When the migration completes
    Then the timeouts of "app" are back to their configured values
