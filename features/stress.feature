Feature: Stress
  Maintenance on a busy cluster: many clients of many connections, under
  steady traffic, through several maintenance actions in a row. A real
  cluster queues actions posted while another runs on the same database and
  runs them one after another. A smart client comes through all of it
  without a single error: each connection moves once per MOVING, no client
  opens more connections than its pool holds (beyond one new connection per
  handoff), and every write the database acknowledged can be read back.

  Background:
    Given a standalone database

  @serial
  Scenario: ST1 four clients of 150 connections through overlapping failover, migration and failover, then a rebind
    Given clients "app1", "app2", "app3" and "app4" with 150 connections each and maintenance notifications enabled
    And steady traffic of 8 concurrent requests from every client
    And the traffic runs for 1 s before any maintenance
    # 1 s apart, so that they overlap on the emulator's short timings too (a
    # failover there lasts about 2 s); against a real cluster, 5 s apart do.
    When these maintenance actions are posted, each the given time after the one before:
      | action    | after |
      | failover  | 0 s   |
      | migration | 1 s   |
      | failover  | 1 s   |
    # 600 (and, in ST2, 1,000) connections dial, opt in and name themselves
    # in the grace, ten at a time per client, while client, proxies and
    # shards share two cores: 4 s rather than the suite's 2 s (a real
    # cluster announces 15 s).
    And the database endpoint is rebound to another node with a grace of 4 s
    Then every connection of every client hands off exactly once
    And no client ever had more connections open than its pool holds, beyond one new connection per handoff
    And the server never held more connections of a client than its pool, its handoff workers and its requests in flight, and a few
    And the traffic saw no errors
    And the traffic of every client kept at least half its pace from before the maintenance throughout the maintenance, except while the server held every request
    And the traffic of every client kept at least half its pace from before the maintenance while the endpoint moved
    And every acknowledged write is readable
    And the traffic completed at least 5000 operations

  @serial
  Scenario: ST2 a thousand connections of one client move within the grace, and latency barely moves
    Given a client "app" with 1000 connections and maintenance notifications enabled
    And steady traffic from "app"
    And the traffic runs for 1 s before any maintenance
    When the database endpoint is rebound to another node with a grace of 4 s
    Then every connection of "app" handed off within the grace of its MOVING
    And the traffic saw no errors
    And the p99 latency of "app" while its connections moved stayed under 100 ms
    And the traffic of every client kept at least half its pace from before the maintenance while the endpoint moved
    And every acknowledged write is readable
