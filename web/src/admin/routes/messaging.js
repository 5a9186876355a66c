// 消息中心 (issue 18, MSG-1): notice templates, the outside channels and their health, and what each
// partner system may publish. The pages use the admin.messaging permission.
const G = '消息中心'
const page = (name) => () => import(`../pages/messaging/${name}.vue`)

export default [
  { path: '/messaging/templates', name: 'notice-templates', component: page('TemplatesPage'), meta: { title: '消息模板', menu: { group: G, order: 60 } } },
  { path: '/messaging/channels', name: 'notice-channels', component: page('ChannelsPage'), meta: { title: '消息渠道', menu: { group: G, order: 61 } } },
  { path: '/messaging/publish-rules', name: 'publish-rules', component: page('PublishRulesPage'), meta: { title: '推送权限', menu: { group: G, order: 62 } } },
]
