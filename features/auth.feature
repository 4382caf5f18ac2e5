Feature: Authentication
  Enterprise databases run with passwords and ACL users. A client sends the
  same credentials on every connection it opens, the ones a handoff opens
  included, and the shards themselves check them: a new shard knows the users
  before it takes traffic. A wrong password is refused at once, in Redis's own
  words, and not retried.

  Background:
    Given a standalone database

  Scenario: AU1 a password on the default user goes through every operation
    Given the database requires a password
    And a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then the traffic saw no errors
    And every acknowledged write is readable
    And every connection of "app" hands off exactly once
    And every connection of "app" is authenticated as the database's user

  Scenario: AU2 an ACL user limited to some keys and commands works through every operation, and is refused the rest
    Given the database's user is an ACL user limited to the suite's keys and a command set
    And a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then the command "FLUSHALL" from "app" is refused with an error that says "NOPERM"
    And the command "SET outside-the-suite 1" from "app" is refused with an error that says "NOPERM"
    And the traffic saw no errors
    And every acknowledged write is readable
    And every connection of "app" hands off exactly once

  Scenario: AU3 a wrong password is refused at once with Redis's error, and not retried
    Given the database requires a password
    When a client "intruder" with maintenance notifications enabled connects with these settings:
      | password | not-the-password |
    Then connecting "intruder" fails with an error that says "WRONGPASS"
    And connecting "intruder" failed within 1 s after a single connection attempt

  Scenario: AU4 a handoff connection authenticates as the same ACL user
    Given the database's user is an ACL user limited to the suite's keys and a command set
    And a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database endpoint is rebound to another node
    Then every connection of "app" hands off exactly once
    And every connection of "app" now uses the endpoint MOVING named
    And every connection of "app" is authenticated as the database's user
    And the traffic saw no errors
