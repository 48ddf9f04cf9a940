# Idempotent test fixture for the Debian-packaged Redmine 5.0 started by scripts/redmine_up.sh.
# Run with:  cd /usr/share/redmine && bundle exec rails runner -e production /path/redmine_setup.rb
#
# - REST API on; default trackers/statuses/roles/workflows (en) when the database has none;
# - admin (the plugin's account in tests): known password, API key a*40;
# - requester: Reporter on the private project "helpdesk", API key b*40; the Reporter role gets
#   "Edit own issues" so that the default workflow (New/In Progress/Resolved/Feedback -> Closed,
#   Resolved -> Feedback) applies to the requester's own issues;
# - agent: role "Agent (no private notes)": may view issues, add notes and edit issues, with the
#   Developer's workflow, but lacks set_notes_private and view_private_notes: Redmine silently
#   posts its "private" notes as public ones (what the connector must detect).
# Keys (40 characters of [a-z0-9]) and passwords come from the environment, with fixed defaults.
admin_key     = ENV.fetch('REDMINE_ADMIN_KEY',     'a' * 40)
requester_key = ENV.fetch('REDMINE_REQUESTER_KEY', 'b' * 40)
agent_key     = ENV.fetch('REDMINE_AGENT_KEY',     'c' * 40)
admin_pw      = ENV.fetch('REDMINE_ADMIN_PASSWORD', 'admin-pass-123')
req_pw        = ENV.fetch('REDMINE_REQUESTER_PASSWORD', 'requester-pass-123')
agent_pw      = ENV.fetch('REDMINE_AGENT_PASSWORD', 'agent-pass-123')
port          = ENV.fetch('REDMINE_PORT', '3000')
AGENT_ROLE    = 'Agent (no private notes)'

if ActiveRecord::Base.connection.migration_context.needs_migration?
  abort 'database not migrated: run  SCHEMA=/dev/null bundle exec rake db:migrate'
end
# default trackers/statuses/roles/workflows/priorities (no-op when already loaded)
Redmine::DefaultData::Loader.load('en') if Redmine::DefaultData::Loader.no_data?

ActiveRecord::Base.transaction do
  # 1. settings
  Setting.rest_api_enabled = '1'
  Setting.default_language = 'en'
  Setting.host_name = "127.0.0.1:#{port}"
  Setting.protocol = 'http'

  # 2. admin: known password, no forced change (the shipped admin/admin must change it), known key
  admin = User.find_by_login('admin') or raise 'no admin user (migrations not run?)'
  admin.password = admin_pw
  admin.password_confirmation = admin_pw
  admin.must_change_passwd = false
  admin.save!

  set_key = lambda do |user, key|
    tok = Token.find_by(user_id: user.id, action: 'api') || Token.create!(user: user, action: 'api')
    tok.update_column(:value, key)  # value is regenerated in before_create, so set it afterwards
  end
  set_key.call(admin, admin_key)

  # 3. private project with all trackers and issue tracking
  trackers = Tracker.sorted.to_a
  raise 'no trackers: run REDMINE_LANG=en rake redmine:load_default_data first' if trackers.empty?
  project = Project.find_by_identifier('helpdesk') || Project.new(identifier: 'helpdesk')
  project.name = 'Helpdesk'
  project.is_public = false
  project.trackers = trackers
  project.enabled_module_names = %w(issue_tracking time_tracking news documents files wiki)
  project.save!

  make_user = lambda do |login, first, last, pw|
    u = User.find_by_login(login) || User.new
    u.login = login
    u.firstname = first
    u.lastname = last
    u.mail = "#{login}@example.test"
    u.password = pw
    u.password_confirmation = pw
    u.admin = false
    u.status = User::STATUS_ACTIVE
    u.must_change_passwd = false
    u.save!
    u
  end
  add_member = lambda do |user, role|
    m = Member.find_by(user_id: user.id, project_id: project.id)
    if m.nil?
      Member.create!(principal: user, project: project, roles: [role])
    elsif m.roles.to_a != [role]
      m.roles = [role]
      m.save!
    end
  end

  # 4. requester: Reporter role. The default workflow has Reporter transitions to Closed (and
  #    Resolved -> Feedback), but the default Reporter lacks edit_issues/edit_own_issues, so Redmine
  #    ignores its status_id (204, status unchanged; allowed_statuses still lists Closed). Grant
  #    "Edit own issues" so that a requester can close or reopen its own issue, as sites that use
  #    the Resolved -> Closed confirmation pattern do.
  req = make_user.call('requester', 'Rita', 'Requester', req_pw)
  set_key.call(req, requester_key)
  reporter = Role.find_by(name: 'Reporter') || Role.givable.sorted.last
  reporter.add_permission!(:edit_own_issues) unless reporter.has_permission?(:edit_own_issues)
  add_member.call(req, reporter)

  # 5. agent: a role without set_notes_private / view_private_notes
  developer = Role.find_by(name: 'Developer') or raise 'no Developer role (default data not loaded?)'
  agent_role = Role.find_by(name: AGENT_ROLE) || Role.new(name: AGENT_ROLE)
  agent_role.issues_visibility = 'all'
  agent_role.permissions = %i(view_issues add_issues edit_issues add_issue_notes view_issue_watchers save_queries)
  agent_role.save!
  agent_role.copy_workflow_rules(developer) if WorkflowTransition.where(role_id: agent_role.id).none?
  agent = make_user.call('agent', 'Alex', 'Agent', agent_pw)
  set_key.call(agent, agent_key)
  add_member.call(agent, agent_role)
end

project = Project.find_by_identifier('helpdesk')
puts "project_id=#{project.id}"
puts "trackers=#{Tracker.sorted.map { |t| "#{t.id}:#{t.name}" }.join(',')}"
puts "statuses=#{IssueStatus.sorted.map { |s| "#{s.id}:#{s.name}#{s.is_closed? ? '(closed)' : ''}" }.join(',')}"
%w(admin requester agent).each { |l| puts "#{l}_id=#{User.find_by_login(l).id}" }
puts "agent_role_id=#{Role.find_by(name: AGENT_ROLE).id}"
