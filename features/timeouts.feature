Feature: Timeouts during maintenance
  While a maintenance window is open (between MIGRATING and MIGRATED, or between
  FAILING_OVER and FAILED_OVER) a smart client waits longer for replies: its
  relaxed timeout. Relaxation is a floor: the effective timeout is the larger of
  the configured and the relaxed one, so a larger or unbounded configured timeout
  is never shortened. When the last window closes, the exact configured timeout
  returns after a short tail. A window whose completion never comes closes at a
  backstop, and a completion that the server replays to a new connection opens
  nothing.

  Background:
    Given a standalone database

  Scenario: TO1 relaxed to the larger of the configured and relaxed timeouts
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout | 1 s |
      | relaxed timeout  | 3 s |
    And steady traffic from "app"
    When the database's shard migrates to another node
    Then "app" was relaxed to 3 s between MIGRATING and MIGRATED
    When the database fails over
    Then "app" was relaxed to 3 s between FAILING_OVER and FAILED_OVER
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" are back to their configured values

  Scenario: TO2 the exact configured timeout returns after the completion and its tail
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout  | 1 s    |
      | relaxed timeout   | 3 s    |
      | post-handoff tail | 500 ms |
    When the database's shard migrates to another node
    Then "app" returns to a timeout of 1 s between 450 ms and 1.2 s after MIGRATED
    When the database fails over
    Then "app" returns to a timeout of 1 s between 450 ms and 1.2 s after FAILED_OVER
    And the timeouts of "app" are back to their configured values

  Scenario Outline: TO3 a configured timeout larger than the relaxed one is never shortened
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout | <configured> |
      | relaxed timeout  | 3 s          |
    And steady traffic from "app"
    When the database's shard migrates to another node, holding requests for 5 s
    Then "app" receives MIGRATING then MIGRATED with consecutive sequence numbers on the same connection
    And the timeout of "app" was <configured> throughout
    And the traffic saw no errors

    Examples:
      | configured |
      | 10 s       |
      | unbounded  |

  @emulator
  Scenario: TO4 a lost completion: the backstop closes the window
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout   | 1 s    |
      | relaxed timeout    | 2 s    |
      | relaxed window max | 3 s    |
      | post-handoff tail  | 200 ms |
    When the database's shard migrates to another node and MIGRATED is lost
    Then "app" receives MIGRATING
    And "app" received no MIGRATED
    And "app" returns to a timeout of 1 s between 2.9 s and 3.8 s after MIGRATING

  @emulator
  Scenario: TO5 nested windows stay relaxed until the last completion
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout  | 1 s    |
      | relaxed timeout   | 3 s    |
      | post-handoff tail | 200 ms |
    When the emulator sends MIGRATING with sequence number 101
    And the emulator sends FAILING_OVER with sequence number 201
    And the emulator sends MIGRATED with sequence number 102
    Then "app" is still relaxed 500 ms later
    When the emulator sends FAILED_OVER with sequence number 202
    Then "app" returns to a timeout of 1 s between 150 ms and 900 ms after FAILED_OVER

  @emulator
  Scenario: TO6 a slow reply succeeds inside a window; the same delay outside one is a timeout
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout  | 1 s    |
      | relaxed timeout   | 3 s    |
      | post-handoff tail | 200 ms |
    When a migration of the database's shard starts with a lead of 4 s
    And "app" receives MIGRATING
    And replies of the database are delayed by 1500 ms for 2 s
    Then a GET from "app" succeeds after between 1.4 s and 2.9 s
    When the migration completes
    Then the timeouts of "app" are back to their configured values
    When replies of the database are delayed by 1500 ms for 3 s
    Then a GET from "app" fails with a timeout outside a maintenance window after between 950 ms and 1.4 s

  Scenario Outline: TO7 the <profile> profile survives a failover, a migration and a rebind
    Given a client "app" with 2 connections and maintenance notifications enabled and these settings:
      | handoff timeout   | <handoff> |
      | relaxed timeout   | <relaxed> |
      | post-handoff tail | <tail>    |
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then every connection of "app" hands off exactly once
    And the traffic saw no errors
    And every acknowledged write is readable
    And the timeouts of "app" come back to their configured values when the post-handoff tail ends

    Examples:
      | profile      | handoff | relaxed | tail   |
      | conservative | 60 s    | 30 s    | 2 min  |
      | aggressive   | 5 s     | 3 s     | 1 s    |
      | high latency | 90 s    | 30 s    | 10 min |

  Scenario: TO8 a completion replayed to a new connection opens no window
    Given a client "app" with maintenance notifications enabled
    When the database fails over
    Then the timeouts of "app" are back to their configured values
    When "app" opens a new connection
    Then the new connection of "app" opened no window, even for a replayed FAILED_OVER
    And "app" can still write and read

  Scenario: TO9 negative control: a client that does not relax times out when a switch-over holds its requests
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout | 1 s |
      | relaxed timeout  | 3 s |
      | relaxation       | off |
    And steady traffic from "app"
    When the database fails over
    Then "app" receives FAILING_OVER then FAILED_OVER with consecutive sequence numbers on the same connection
    And the traffic saw timeouts during the maintenance, and no other error
    And every acknowledged write is readable
    And the claim fails that "app" was relaxed between FAILING_OVER and FAILED_OVER, saying "it was not relaxed"

  @emulator
  Scenario: TO10 a completion numbered otherwise than its start + 1 still closes the oldest open window of its kind
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout  | 1 s    |
      | relaxed timeout   | 3 s    |
      | post-handoff tail | 200 ms |
    When the emulator sends MIGRATING with sequence number 301
    And the emulator sends MIGRATED with sequence number 305
    Then "app" returns to a timeout of 1 s between 150 ms and 900 ms after MIGRATED

  @emulator
  Scenario: TO11 a request held beyond the relaxed timeout times out at it, not at the configured one
    Given a client "app" with maintenance notifications enabled and these settings:
      | response timeout | 1 s |
      | relaxed timeout  | 2 s |
    And steady traffic from "app"
    When the database's shard migrates to another node, holding requests for 3500 ms
    Then "app" was relaxed to 2 s between MIGRATING and MIGRATED
    And the traffic saw timeouts during the maintenance, and no other error
    And every acknowledged write is readable
